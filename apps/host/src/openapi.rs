//! Checks of an OpenAPI part against the router that serves it, for the tests of the node and
//! of each app: the routes a router's source declares, and the operations a document lists.

use std::collections::BTreeSet;

/// `(method, path)` of every `.route("PATH", method(...))` in a router's source (its code
/// before any `#[cfg(test)]`), each path prefixed with `prefix` (where the router is mounted).
pub fn routes_in_source(src: &str, prefix: &str) -> BTreeSet<(String, String)> {
    let mut out = BTreeSet::new();
    let src = src.split("#[cfg(test)]").next().unwrap_or(src);
    // Joined into one line, so a route split by rustfmt is still one match.
    let flat: String = src.split_whitespace().collect::<Vec<_>>().join(" ");
    for part in flat.split(".route(").skip(1) {
        let Some(rest) = part.trim_start().strip_prefix('"') else {
            continue;
        };
        if !rest.starts_with('/') {
            continue;
        }
        let Some((path, after)) = rest.split_once('"') else {
            continue;
        };
        let after = after.trim_start_matches(',').trim_start();
        let method: String = after
            .chars()
            .take_while(|c| c.is_ascii_alphabetic())
            .collect();
        out.insert((method, format!("{prefix}{path}")));
    }
    out
}

/// `(method, path)` of every operation `doc` lists; `Err` names one without a summary or
/// responses.
pub fn documented(doc: &serde_json::Value) -> Result<BTreeSet<(String, String)>, String> {
    let mut out = BTreeSet::new();
    let paths = doc["paths"].as_object().ok_or("no paths")?;
    for (path, item) in paths {
        let item = item.as_object().ok_or(format!("{path} is not an object"))?;
        for (method, op) in item {
            if !(op["summary"].is_string() && op["responses"].is_object()) {
                return Err(format!("{method} {path} needs a summary and responses"));
            }
            out.insert((method.clone(), path.clone()));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_are_found_in_source_split_or_not() {
        let src = r#"
            Router::new().route("/a", get(x)).route(
                "/b/{id}",
                put(y),
            ).route(path, get(z))
            #[cfg(test)]
            .route("/test-only", get(t))
        "#;
        let found = routes_in_source(src, "/p");
        let want: BTreeSet<_> = [("get", "/p/a"), ("put", "/p/b/{id}")]
            .iter()
            .map(|(m, p)| (m.to_string(), p.to_string()))
            .collect();
        assert_eq!(found, want);
        let doc = serde_json::json!({ "paths": { "/p/a": { "get": { "summary": "s", "responses": {} } } } });
        assert_eq!(documented(&doc).unwrap().len(), 1);
        let bad = serde_json::json!({ "paths": { "/p/a": { "get": {} } } });
        assert!(documented(&bad).is_err());
    }
}
