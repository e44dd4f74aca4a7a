//! The dashboard (issue 16), `GET /ui` on every node: one HTML page,
//! embedded in the binary (`cargo build` stays the only build step), that
//! draws the ring, the members and this node's last 15 minutes from its
//! own JSON endpoints (`/ring`, `/admin/cluster`, `/admin/transfers`,
//! `/admin/hints`, `/admin/series`) with hand-drawn SVG, refreshed every
//! second. Nothing is loaded from another host, so it works offline.

use bytes::Bytes;
use http_body_util::Full;
use hyper::Response;
use hyper::header::{CACHE_CONTROL, CONTENT_TYPE};

use crate::http::responses::{HttpResponse, set_header};

/// The page.
const PAGE: &str = include_str!("ui.html");

/// `GET /ui`.
pub(crate) fn page() -> HttpResponse {
    let mut response = Response::new(Full::new(Bytes::from_static(PAGE.as_bytes())));
    set_header(&mut response, CONTENT_TYPE.as_str(), "text/html; charset=utf-8");
    set_header(&mut response, CACHE_CONTROL.as_str(), "no-cache");
    response
}
