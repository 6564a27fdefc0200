//! The portal: static pages (HTML, CSS, JavaScript) that the node serves under `/portal/`.
//! They use only the node's public HTTP API and the browser's WebCrypto; nothing secret is
//! sent to the node (a share link's key stays in the URL fragment and signs in the browser).

const INDEX: &str = include_str!("../portal/index.html");
const APP: &str = include_str!("../portal/app.js");
const HASH: &str = include_str!("../portal/hash.js");
const STYLE: &str = include_str!("../portal/style.css");

/// The portal file `name` (`""` is the index): its content type and bytes.
pub fn asset(name: &str) -> Option<(&'static str, &'static [u8])> {
    let (content_type, body) = match name {
        "" | "index.html" => ("text/html; charset=utf-8", INDEX),
        "app.js" => ("text/javascript; charset=utf-8", APP),
        "hash.js" => ("text/javascript; charset=utf-8", HASH),
        "style.css" => ("text/css; charset=utf-8", STYLE),
        _ => return None,
    };
    Some((content_type, body.as_bytes()))
}
