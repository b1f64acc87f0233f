//! The web console at `/console` on the API listener: a small page without framework or
//! build step whose files are embedded in the binary (`apps/herald/console/`).
//!
//! The files hold no data and no secret, so they are served without a key. Everything the
//! page shows comes from the keyed REST routes (`/metrics`, `/queues/:id`, `/watch/:id`,
//! `/push`), called with the API key the operator typed into its login form; the page keeps
//! that key in the tab's `sessionStorage` (gone when the tab closes, never in a cookie, so
//! no other site can make a browser use it). Answers forbid framing and allow scripts,
//! styles and fetches from this origin only.

use tide::{Request, Response, StatusCode};

/// One embedded file: its name under `/console/`, its content type, its bytes.
struct Asset {
    name: &'static str,
    content_type: &'static str,
    body: &'static str,
}

const ASSETS: &[Asset] = &[
    Asset {
        name: "index.html",
        content_type: "text/html; charset=utf-8",
        body: include_str!("../console/index.html"),
    },
    Asset {
        name: "console.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_str!("../console/console.js"),
    },
    Asset {
        name: "console.css",
        content_type: "text/css; charset=utf-8",
        body: include_str!("../console/console.css"),
    },
];

/// Adds `/console`, `/console/` (the page) and `/console/:file` (its scripts and styles).
pub fn routes<St: Clone + Send + Sync + 'static>(app: &mut tide::Server<St>) {
    app.at("/console")
        .get(|_req: Request<St>| async { Ok(answer("index.html")) });
    app.at("/console/")
        .get(|_req: Request<St>| async { Ok(answer("index.html")) });
    app.at("/console/:file")
        .get(|req: Request<St>| async move { Ok(answer(req.param("file").unwrap_or(""))) });
}

/// The embedded file `name`, or a 404 in the API's error shape.
fn answer(name: &str) -> Response {
    let Some(asset) = ASSETS.iter().find(|a| a.name == name) else {
        let mut res = Response::new(StatusCode::NotFound);
        res.set_body(serde_json::json!({
            "ok": 0,
            "errors": [format!("no console file {name:?}")],
        }));
        return res;
    };
    let mut res = Response::new(StatusCode::Ok);
    res.set_body(asset.body);
    res.set_content_type(asset.content_type);
    res.insert_header(
        "content-security-policy",
        "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; \
         form-action 'none'",
    );
    res.insert_header("x-frame-options", "DENY");
    res.insert_header("x-content-type-options", "nosniff");
    res.insert_header("referrer-policy", "no-referrer");
    res.insert_header("cache-control", "no-cache");
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_file_the_page_names_is_embedded() {
        let page = ASSETS[0].body;
        for name in ["console.js", "console.css"] {
            assert!(page.contains(&format!("/console/{name}")), "{name}");
            assert!(ASSETS.iter().any(|a| a.name == name), "{name}");
        }
    }

    #[test]
    fn unknown_files_are_404_and_files_forbid_framing() {
        assert_eq!(answer("../secret").status(), StatusCode::NotFound);
        let res = answer("console.js");
        assert_eq!(res.status(), StatusCode::Ok);
        assert!(
            res.header("content-security-policy")
                .is_some_and(|v| v.as_str().contains("frame-ancestors 'none'"))
        );
    }
}
