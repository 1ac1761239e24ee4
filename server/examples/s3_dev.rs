//! A development S3 server for benchmarks and trying presign mode from a browser: `s3s-fs` (an
//! S3 implementation on a local directory, SigV4 and presigned URLs checked) behind a CORS
//! layer that lets any page `PUT` presigned part URLs with their `x-amz-checksum-sha256` header
//! and read the `ETag` of the answer. Not for production: the credentials are fixed and every
//! origin is allowed.
//!
//! ```sh
//! cargo run --release -p filesync-server --example s3_dev -- <dir> [addr]
//! ```
//!
//! The bucket is [`BUCKET`] (the folder `<dir>/filesync-dev`, created if missing); the keys
//! are [`ACCESS_KEY`] and [`SECRET_KEY`]. It prints `listening on http://<addr>` when ready
//! (`addr` defaults to `127.0.0.1:0`, any free port). Start filesync-server with
//! `--blob-mode presign --s3-endpoint <that url> --s3-bucket filesync-dev
//! --s3-access-key-id AKIADEVFILESYNC --s3-secret-access-key dev-secret-access-key`.

use hyper::header::{self, HeaderValue};
use hyper::http::{Method, Request, Response, StatusCode};

/// The one bucket.
pub const BUCKET: &str = "filesync-dev";
/// The access key id requests must be signed with.
pub const ACCESS_KEY: &str = "AKIADEVFILESYNC";
/// Its secret.
pub const SECRET_KEY: &str = "dev-secret-access-key";

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let dir = std::path::PathBuf::from(args.next().ok_or("usage: s3_dev <dir> [addr]")?);
    let addr = args.next().unwrap_or_else(|| "127.0.0.1:0".into());
    std::fs::create_dir_all(dir.join(BUCKET))?;
    let fs = s3s_fs::FileSystem::new(&dir).map_err(|e| format!("{}: {e:?}", dir.display()))?;
    let mut builder = s3s::service::S3ServiceBuilder::new(fs);
    builder.set_auth(s3s::auth::SimpleAuth::from_single(ACCESS_KEY, SECRET_KEY));
    let s3 = builder.build();

    let listener = tokio::net::TcpListener::bind(&addr).await?;
    println!("listening on http://{}", listener.local_addr()?);
    loop {
        let (socket, _) = listener.accept().await?;
        let s3 = s3.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| with_cors(s3.clone(), req));
            let io = hyper_util::rt::TokioIo::new(socket);
            // A connection that fails is the client's problem; the server goes on.
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(io, service)
                .await;
        });
    }
}

/// Answers a CORS preflight itself; passes anything else to S3 and lets every origin read the
/// answer and its `ETag`.
async fn with_cors(
    s3: s3s::service::S3Service,
    req: Request<hyper::body::Incoming>,
) -> Result<Response<s3s::Body>, s3s::HttpError> {
    let mut resp = if req.method() == Method::OPTIONS {
        let mut resp = Response::new(s3s::Body::empty());
        *resp.status_mut() = StatusCode::NO_CONTENT;
        let h = resp.headers_mut();
        h.insert(
            header::ACCESS_CONTROL_ALLOW_METHODS,
            HeaderValue::from_static("GET, PUT, HEAD"),
        );
        if let Some(asked) = req.headers().get(header::ACCESS_CONTROL_REQUEST_HEADERS) {
            h.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, asked.clone());
        }
        h.insert(
            header::ACCESS_CONTROL_MAX_AGE,
            HeaderValue::from_static("600"),
        );
        resp
    } else {
        s3.call(req.map(s3s::Body::from)).await?
    };
    let h = resp.headers_mut();
    h.insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    h.insert(
        header::ACCESS_CONTROL_EXPOSE_HEADERS,
        HeaderValue::from_static("ETag"),
    );
    Ok(resp)
}
