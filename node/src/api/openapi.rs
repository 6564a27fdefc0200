//! The node's OpenAPI 3.1 document (`GET /api/v1/openapi.json`): the node's own part
//! (`openapi.json` beside this file), the routes of the apps' static pages, and each app's part
//! (`App::openapi`), merged.

use medchain_app::Pages;
use serde_json::{json, Map, Value};

/// The node's own routes.
pub const NODE_PART: &str = include_str!("openapi.json");

/// The whole document for a node with these apps: `(name, OpenAPI part, pages)` each.
pub fn document(apps: &[(&str, Value, Option<Pages>)]) -> Value {
    let mut doc: Value = serde_json::from_str(NODE_PART).expect("the node's OpenAPI part is JSON");
    let pages: Vec<Pages> = apps.iter().filter_map(|(_, _, p)| *p).collect();
    merge(&mut doc, &pages_part(&pages));
    for (_, part, _) in apps {
        merge(&mut doc, part);
    }
    doc
}

/// Adds `part`'s paths, tags and components to `doc` (a name already there is kept).
fn merge(doc: &mut Value, part: &Value) {
    if let Some(items) = part["paths"].as_object() {
        let into = object(&mut doc["paths"]);
        for (k, v) in items {
            into.entry(k.clone()).or_insert_with(|| v.clone());
        }
    }
    if let Some(components) = part["components"].as_object() {
        for (kind, items) in components {
            let into = object(&mut doc["components"][kind.as_str()]);
            for (k, v) in items.as_object().into_iter().flatten() {
                into.entry(k.clone()).or_insert_with(|| v.clone());
            }
        }
    }
    if let Some(tags) = part["tags"].as_array() {
        if !doc["tags"].is_array() {
            doc["tags"] = json!([]);
        }
        let list = doc["tags"].as_array_mut().expect("an array");
        for t in tags {
            if !list.iter().any(|have| have["name"] == t["name"]) {
                list.push(t.clone());
            }
        }
    }
}

/// `v` as an object (made one if it is not).
fn object(v: &mut Value) -> &mut Map<String, Value> {
    if !v.is_object() {
        *v = Value::Object(Map::new());
    }
    v.as_object_mut().expect("an object")
}

/// The routes the node serves for the apps' static pages.
fn pages_part(pages: &[Pages]) -> Value {
    let mut paths = Map::new();
    let error =
        json!({ "application/json": { "schema": { "$ref": "#/components/schemas/Error" } } });
    if let Some(first) = pages.first() {
        paths.insert(
            "/".into(),
            json!({ "get": {
                "tags": ["pages"],
                "summary": format!("Redirects to {}/", first.mount),
                "responses": { "307": { "description": "to the pages" } }
            }}),
        );
    }
    for p in pages {
        paths.insert(
            p.mount.to_owned(),
            json!({ "get": {
                "tags": ["pages"],
                "summary": format!("Redirects to {}/", p.mount),
                "responses": { "308": { "description": "permanent redirect" } }
            }}),
        );
        paths.insert(
            format!("{}/", p.mount),
            json!({ "get": {
                "tags": ["pages"],
                "summary": format!("The index page: {}", p.about),
                "responses": { "200": {
                    "description": "HTML",
                    "content": { "text/html": { "schema": { "type": "string" } } }
                } }
            }}),
        );
        paths.insert(
            format!("{}/{{file}}", p.mount),
            json!({ "get": {
                "tags": ["pages"],
                "summary": "A file of the pages (HTML, JavaScript, CSS)",
                "parameters": [{
                    "name": "file", "in": "path", "required": true,
                    "schema": { "type": "string" }
                }],
                "responses": {
                    "200": { "description": "the file", "content": { "*/*": { "schema": { "type": "string" } } } },
                    "404": { "description": "no such file", "content": error }
                }
            }}),
        );
    }
    json!({ "paths": paths })
}

#[cfg(test)]
mod tests {
    use super::*;
    use medchain_app::openapi::{documented, routes_in_source};

    /// The node's part documents exactly the routes its router declares.
    #[test]
    fn the_node_part_lists_exactly_the_node_routes() {
        let doc: Value = serde_json::from_str(NODE_PART).unwrap();
        assert_eq!(doc["openapi"], "3.1.0");
        let routed = routes_in_source(include_str!("mod.rs"), "");
        assert!(
            routed.len() >= 7,
            "the source scan finds the routes: {routed:?}"
        );
        assert_eq!(routed, documented(&doc).unwrap());
    }

    /// Pages and apps' parts are merged; a page mount gets its four routes.
    #[test]
    fn apps_parts_and_pages_are_merged() {
        fn asset(_: &str) -> Option<medchain_app::Asset> {
            None
        }
        let pages = Pages {
            mount: "/site",
            about: "a site",
            asset,
        };
        let part = json!({
            "paths": { "/api/v1/x/thing": { "get": { "summary": "s", "responses": {} } } },
            "components": { "schemas": { "Thing": { "type": "object" } } },
            "tags": [{ "name": "x" }]
        });
        let doc = document(&[("x", part, Some(pages))]);
        let have = documented(&doc).unwrap();
        for p in [
            "/",
            "/site",
            "/site/",
            "/site/{file}",
            "/api/v1/x/thing",
            "/api/v1/status",
        ] {
            assert!(have.contains(&("get".into(), p.into())), "{p}: {have:?}");
        }
        assert!(doc["components"]["schemas"]["Thing"].is_object());
        assert!(doc["components"]["schemas"]["Error"].is_object());
        assert!(doc["tags"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["name"] == "x"));
    }
}
