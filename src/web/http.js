// fetch and XHR for src/web/http.rs: calls with timeouts and aborts, bounded answers, server-sent
// events read through fetch. Answers never reject: failures come back as `{failure, message}`.

/** @returns {RequestInit} */
function init(method, headers, body, signal, credentials) {
  return {
    method,
    headers,
    body: body ?? undefined,
    signal,
    credentials: credentials ? 'include' : 'same-origin',
    cache: 'no-store',
  };
}

function failed(e, why) {
  if (why.reason) return { failure: why.reason };
  return { failure: 'offline', message: String(e && e.message || e) };
}

function answer(r) {
  return { status: r.status, retryAfter: r.headers.get('retry-after') };
}

// API answers and live messages are JSON of at most a page of events (a few MB): anything
// longer is not one, and is not read into memory.
const MAX_TEXT = 32 * 1024 * 1024;
const TOO_LARGE = { failure: 'too_large', message: `the server's answer is larger than ${MAX_TEXT} bytes` };

// The body as text, or null (read no further) once it is longer than MAX_TEXT.
async function boundedText(r) {
  if (Number(r.headers.get('content-length')) > MAX_TEXT) {
    r.body?.cancel().catch(() => {});
    return null;
  }
  if (!r.body) return r.text();
  const reader = r.body.getReader();
  const decoder = new TextDecoder();
  let size = 0;
  let text = '';
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return text + decoder.decode();
    size += value.byteLength;
    if (size > MAX_TEXT) {
      reader.cancel().catch(() => {});
      return null;
    }
    text += decoder.decode(value, { stream: true });
  }
}

// An error answer's text for the message: cut, never refused.
const errorText = async (r) => (await boundedText(r).catch(() => '')) ?? '';

// A POST that outlives the page (`keepalive`), for a page that is going: nobody reads the
// answer, and a refusal (the browser's 64 KiB budget spent) is silently dropped.
export function keepalivePost(url, headers, body, credentials) {
  try {
    fetch(url, { ...init('POST', headers, body, undefined, credentials), keepalive: true }).catch(() => {});
  } catch {
    // Best effort.
  }
}

export function httpText(method, url, headers, body, credentials, timeoutMs) {
  const ctrl = new AbortController();
  const why = {};
  const timer = setTimeout(() => { why.reason = 'timeout'; ctrl.abort(); }, timeoutMs);
  const done = (async () => {
    try {
      const r = await fetch(url, init(method, headers, body, ctrl.signal, credentials));
      const text = await boundedText(r);
      return text === null ? TOO_LARGE : { ...answer(r), text };
    } catch (e) {
      return failed(e, why);
    } finally {
      clearTimeout(timer);
    }
  })();
  return { done, abort() { why.reason = why.reason || 'cancelled'; ctrl.abort(); } };
}

export function httpStream(url, headers, credentials, timeoutMs) {
  // The timeout covers the response head only: a body may take long, and stalls are the
  // engine's to detect.
  const ctrl = new AbortController();
  const why = {};
  const timer = setTimeout(() => { why.reason = 'timeout'; ctrl.abort(); }, timeoutMs);
  const done = (async () => {
    try {
      const r = await fetch(url, init('GET', headers, null, ctrl.signal, credentials));
      clearTimeout(timer);
      if (!r.ok || !r.body) {
        const text = await errorText(r);
        return { ...answer(r), text };
      }
      const length = Number(r.headers.get('content-length'));
      return {
        ...answer(r),
        body: r.body,
        length: Number.isFinite(length) ? length : null,
        contentRange: r.headers.get('content-range'),
      };
    } catch (e) {
      clearTimeout(timer);
      return failed(e, why);
    }
  })();
  return { done, abort() { why.reason = why.reason || 'cancelled'; ctrl.abort(); } };
}

export function xhrSend(method, url, headers, body, credentials, onProgress) {
  const xhr = new XMLHttpRequest();
  const why = {};
  const done = new Promise((resolve) => {
    xhr.open(method, url);
    xhr.withCredentials = !!credentials;
    for (const [k, v] of Object.entries(headers)) xhr.setRequestHeader(k, v);
    xhr.upload.onprogress = (e) => onProgress(e.loaded, e.lengthComputable ? e.total : body.size);
    xhr.onload = () => resolve({
      status: xhr.status,
      retryAfter: xhr.getResponseHeader('retry-after'),
      text: xhr.responseText,
      // A multipart part's ETag (cross origin: only if CORS exposes it).
      etag: xhr.getResponseHeader('etag'),
    });
    xhr.onerror = () => resolve({ failure: 'offline', message: 'network error' });
    xhr.onabort = () => resolve({ failure: why.reason || 'cancelled' });
    xhr.send(body);
  });
  return { done, abort() { why.reason = why.reason || 'cancelled'; xhr.abort(); } };
}

export function sseOpen(url, headers, credentials, onMessage) {
  const ctrl = new AbortController();
  const why = {};
  const done = (async () => {
    try {
      const r = await fetch(url, init('GET', { ...headers, accept: 'text/event-stream' }, null,
        ctrl.signal, credentials));
      if (!r.ok || !r.body) {
        const text = await errorText(r);
        return { ...answer(r), text };
      }
      const reader = r.body.pipeThrough(new TextDecoderStream()).getReader();
      let buf = '', event = 'message', data = [], dataSize = 0;
      for (;;) {
        const { value, done } = await reader.read();
        if (done) return { status: r.status, text: '' };
        buf += value;
        // A line or a message that never ends is not one of ours.
        if (buf.length + dataSize > MAX_TEXT) {
          reader.cancel().catch(() => {});
          return TOO_LARGE;
        }
        let i;
        while ((i = buf.indexOf('\n')) >= 0) {
          let line = buf.slice(0, i);
          buf = buf.slice(i + 1);
          if (line.endsWith('\r')) line = line.slice(0, -1);
          if (line === '') {
            if (data.length) onMessage(event, data.join('\n'));
            event = 'message';
            data = [];
            dataSize = 0;
          } else if (!line.startsWith(':')) {
            const c = line.indexOf(':');
            const field = c < 0 ? line : line.slice(0, c);
            let v = c < 0 ? '' : line.slice(c + 1);
            if (v.startsWith(' ')) v = v.slice(1);
            if (field === 'event') event = v;
            else if (field === 'data') {
              data.push(v);
              dataSize += v.length;
            }
          }
        }
      }
    } catch (e) {
      return failed(e, why);
    }
  })();
  return { done, abort() { why.reason = why.reason || 'cancelled'; ctrl.abort(); } };
}
