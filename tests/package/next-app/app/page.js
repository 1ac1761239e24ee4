'use client';
// The installed package imported by its name in a client component, as apps do: the module is
// also evaluated on the server while the page is prerendered, so importing must be safe there.
import { useEffect } from 'react';
import * as filesync from 'filesync-wasm';

export default function Page() {
  useEffect(() => {
    window.filesync = filesync;
    document.body.dataset.ready = 'true';
  }, []);
  return <p>filesync-wasm in a Next.js app</p>;
}
