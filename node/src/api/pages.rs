//! The apps' static pages: `{mount}` redirects to `{mount}/`, which serves the index, and
//! `{mount}/{file}` each file, under a content security policy that keeps them to the node's own
//! origin; `/` redirects to the first app's pages.

use axum::extract::Path;
use axum::http::header;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::Router;
use medchain_app::{ApiError, Pages};

/// The content security policy of the apps' pages: the node's own origin only.
const PAGES_CSP: &str = "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; connect-src 'self' blob:; object-src 'none'; base-uri 'none'; frame-ancestors 'none'";

/// Adds the routes of `pages` to `router`.
pub fn mount(mut router: Router, pages: &[Pages]) -> Router {
    if let Some(first) = pages.first() {
        let index = format!("{}/", first.mount);
        router = router.route("/", get(move || async move { Redirect::temporary(&index) }));
    }
    for p in pages {
        router = mount_pages(router, *p);
    }
    router
}

/// Serves `pages`: `{mount}` redirects to `{mount}/`, the index and each file under it.
fn mount_pages(router: Router, pages: Pages) -> Router {
    let mount = pages.mount;
    let slash = format!("{mount}/");
    router
        .route(
            mount,
            get(move || async move { Redirect::permanent(&slash) }),
        )
        .route(
            &format!("{mount}/"),
            get(move || async move { page(pages, "") }),
        )
        .route(
            &format!("{mount}/{{file}}"),
            get(move |Path(file): Path<String>| async move { page(pages, &file) }),
        )
}

/// One file of `pages`, with headers that keep it to the node's origin.
fn page(pages: Pages, file: &str) -> Response {
    match (pages.asset)(file) {
        Some((content_type, body)) => (
            [
                (header::CONTENT_TYPE, content_type),
                (header::CACHE_CONTROL, "no-cache"),
                (header::CONTENT_SECURITY_POLICY, PAGES_CSP),
                (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
                (header::REFERRER_POLICY, "no-referrer"),
            ],
            body,
        )
            .into_response(),
        None => ApiError::not_found(format!("no page file {file:?}")).into_response(),
    }
}
