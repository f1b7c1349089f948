//! The page's gate and API, driven through the router with `oneshot`
//! (no sockets): what a browser, a foreign site and a rebinding attacker
//! each get back.

use std::sync::Arc;

use accord_web::Web;
use accord_workspace::Workspace;
use axum::body::Body;
use axum::http::{Method, Request, Response, StatusCode, header};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;

const PORT: u16 = 7420;
const HOST: &str = "127.0.0.1:7420";
const ORIGIN: &str = "http://127.0.0.1:7420";

/// A page with a signed-in browser.
struct Page {
    web: Web,
    cookie: String,
    _dir: tempfile::TempDir,
}

impl Page {
    /// A page over a new organisation's workspace, already signed in.
    async fn new(org: &str) -> (Page, Arc<Workspace>) {
        let dir = tempfile::tempdir().unwrap();
        let ws = Arc::new(Workspace::init(dir.path(), org).unwrap());
        let web = Web::new(dir.path()).unwrap();
        web.set_address(([127, 0, 0, 1], PORT).into());
        web.attach(ws.clone(), None);
        let cookie = sign_in(&web).await;
        (
            Page {
                web,
                cookie,
                _dir: dir,
            },
            ws,
        )
    }

    async fn call(&self, method: Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        let mut request = Request::builder()
            .method(method.clone())
            .uri(path)
            .header(header::HOST, HOST)
            .header(header::COOKIE, &self.cookie);
        if method != Method::GET {
            request = request.header(header::ORIGIN, ORIGIN);
        }
        let body = match body {
            Some(json) => {
                request = request.header(header::CONTENT_TYPE, "application/json");
                Body::from(json.to_string())
            }
            None => Body::empty(),
        };
        let response = send(&self.web, request.body(body).unwrap()).await;
        let status = response.status();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        let json = serde_json::from_slice(&bytes)
            .unwrap_or(Value::String(String::from_utf8_lossy(&bytes).into()));
        (status, json)
    }

    async fn ok(&self, method: Method, path: &str, body: Option<Value>) -> Value {
        let (status, json) = self.call(method, path, body).await;
        assert_eq!(status, StatusCode::OK, "{path}: {json}");
        json
    }
}

async fn send(web: &Web, request: Request<Body>) -> Response<Body> {
    web.router().oneshot(request).await.unwrap()
}

fn token(web: &Web) -> String {
    web.url().split("token=").nth(1).unwrap().to_owned()
}

/// Visits the printed link and returns the session cookie it set.
async fn sign_in(web: &Web) -> String {
    let request = get(&format!("/?token={}", token(web)), HOST);
    let response = send(web, request).await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(response.headers()[header::LOCATION], "/");
    let set_cookie = response.headers()[header::SET_COOKIE]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(set_cookie.contains("HttpOnly"), "{set_cookie}");
    assert!(set_cookie.contains("SameSite=Strict"), "{set_cookie}");
    set_cookie.split(';').next().unwrap().to_owned()
}

fn get(path: &str, host: &str) -> Request<Body> {
    Request::builder()
        .uri(path)
        .header(header::HOST, host)
        .body(Body::empty())
        .unwrap()
}

async fn text(response: Response<Body>) -> String {
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    String::from_utf8_lossy(&bytes).into_owned()
}

#[tokio::test]
async fn the_page_needs_the_token_once_then_the_cookie() {
    let (page, _ws) = Page::new("Alpha Trust").await;
    let web = &page.web;

    let response = send(web, get("/", HOST)).await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    assert!(
        text(response)
            .await
            .contains("Open the link that `accord serve` printed")
    );

    let response = send(web, get("/?token=0123", HOST)).await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    let body = text(response).await;
    assert!(body.contains("token is not valid"), "{body}");
    assert!(
        !body.contains(&token(web)),
        "a refusal must not echo the token"
    );

    let request = Request::builder()
        .uri("/")
        .header(header::HOST, HOST)
        .header(header::COOKIE, &page.cookie)
        .body(Body::empty())
        .unwrap();
    let response = send(web, request).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()[header::X_FRAME_OPTIONS], "DENY");
    assert!(
        response.headers()[header::CONTENT_SECURITY_POLICY]
            .to_str()
            .unwrap()
            .contains("default-src 'self'")
    );
    assert!(
        text(response)
            .await
            .contains("<script type=\"module\" src=\"/app.js\">")
    );

    // Every API call needs the cookie too.
    let response = send(web, get("/api/state", HOST)).await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn a_foreign_host_or_origin_is_refused_even_with_the_cookie() {
    let (page, _ws) = Page::new("Alpha Trust").await;
    for host in ["evil.example:7420", "127.0.0.1:9999", "localhost"] {
        let request = Request::builder()
            .uri("/api/state")
            .header(header::HOST, host)
            .header(header::COOKIE, &page.cookie)
            .body(Body::empty())
            .unwrap();
        let response = send(&page.web, request).await;
        assert_eq!(response.status(), StatusCode::FORBIDDEN, "{host}");
        assert!(text(response).await.contains("DNS-rebinding"));
    }
    // The token itself does not pass a foreign Host.
    let response = send(
        &page.web,
        get(
            &format!("/?token={}", token(&page.web)),
            "evil.example:7420",
        ),
    )
    .await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN);

    let post = |origin: Option<&str>| {
        let mut request = Request::builder()
            .method(Method::POST)
            .uri("/api/partnerships")
            .header(header::HOST, HOST)
            .header(header::COOKIE, &page.cookie)
            .header(header::CONTENT_TYPE, "application/json");
        if let Some(origin) = origin {
            request = request.header(header::ORIGIN, origin);
        }
        request.body(Body::from(r#"{"name":"Sneaky"}"#)).unwrap()
    };
    let response = send(&page.web, post(Some("http://evil.example"))).await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    assert!(text(response).await.contains("another web site"));
    let response = send(&page.web, post(None)).await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    assert!(text(response).await.contains("no Origin"));
    let (_, list) = page.call(Method::GET, "/api/partnerships", None).await;
    assert_eq!(list["partnerships"], json!([]), "nothing was created");

    let response = send(&page.web, post(Some(ORIGIN))).await;
    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test]
async fn first_run_creates_the_organisation_and_hands_it_over() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let web = Web::new(&data).unwrap();
    web.set_address(([127, 0, 0, 1], PORT).into());
    let created = web.first_run();
    let page = Page {
        cookie: sign_in(&web).await,
        web,
        _dir: tempfile::tempdir().unwrap(),
    };

    assert_eq!(
        page.ok(Method::GET, "/api/state", None).await["phase"],
        "first_run"
    );
    let (status, _) = page.call(Method::GET, "/api/partnerships", None).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    let (status, body) = page
        .call(Method::POST, "/api/setup", Some(json!({"org": "  "})))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");

    page.ok(
        Method::POST,
        "/api/setup",
        Some(json!({"org": "Beta Centre"})),
    )
    .await;
    let state = page.ok(Method::GET, "/api/state", None).await;
    assert_eq!(state["phase"], "starting");
    assert_eq!(state["org"]["name"], "Beta Centre");
    let ws = created.await.unwrap();
    assert_eq!(ws.whoami().name, "Beta Centre");
    let (status, _) = page
        .call(Method::POST, "/api/setup", Some(json!({"org": "Again"})))
        .await;
    assert_eq!(status, StatusCode::CONFLICT);

    page.web.attach(ws, None);
    assert_eq!(
        page.ok(Method::GET, "/api/state", None).await["phase"],
        "ready"
    );
    assert!(data.join("replica.redb").exists());
}

/// Creates a partnership and an MOU through the API; returns the MOU's id.
async fn mou(page: &Page) -> (String, String) {
    let p = page
        .ok(
            Method::POST,
            "/api/partnerships",
            Some(json!({"name": "Sharing Our Strengths"})),
        )
        .await;
    let pid = p["id"].as_str().unwrap().to_owned();
    assert_eq!(p["role"], "decision-maker");
    let doc = page
        .ok(
            Method::POST,
            &format!("/api/partnerships/{pid}/documents"),
            Some(json!({"kind": "mou", "title": "Our MOU"})),
        )
        .await;
    (pid, doc["id"].as_str().unwrap().to_owned())
}

fn purpose(doc: &Value) -> String {
    doc["sections"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["key"] == "purpose")
        .unwrap()["text"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[tokio::test]
async fn splices_made_at_the_same_version_both_survive() {
    let (page, _ws) = Page::new("Alpha Trust").await;
    let (_, doc) = mou(&page).await;
    let shown = page
        .ok(Method::GET, &format!("/api/documents/{doc}"), None)
        .await;
    assert_eq!(shown["editable"], true);
    let base = shown["heads"].clone();
    let splice = |pos: usize, insert: &str| json!({"path": "purpose", "base": base, "splices": [{"pos": pos, "delete": 0, "insert": insert}]});
    let path = format!("/api/documents/{doc}/splice");

    let first = page
        .ok(Method::POST, &path, Some(splice(0, "We help 😀 people.")))
        .await;
    assert_eq!(purpose(&first["document"]), "We help 😀 people.");
    // Typed by someone still looking at the old (empty) version.
    let second = page
        .ok(Method::POST, &path, Some(splice(0, "Together. ")))
        .await;
    let merged = purpose(&second["document"]);
    assert!(
        merged.contains("We help 😀 people.") && merged.contains("Together. "),
        "{merged}"
    );

    // Continuing from one's own change: positions count UTF-16 units, so
    // the emoji counts two, as in the browser.
    let mine = json!([first["hash"]]);
    let after_emoji = "We help 😀".encode_utf16().count();
    let third = page
        .ok(Method::POST, &path, Some(json!({"path": "purpose", "base": mine, "splices": [{"pos": after_emoji, "delete": 0, "insert": "!"}]})))
        .await;
    assert!(
        purpose(&third["document"]).contains("We help 😀! people."),
        "{}",
        purpose(&third["document"])
    );

    // Half an emoji, or an unknown version, is refused and changes nothing.
    let (status, _) = page
        .call(Method::POST, &path, Some(json!({"path": "purpose", "base": mine, "splices": [{"pos": after_emoji - 1, "delete": 0, "insert": "x"}]})))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) = page
        .call(
            Method::POST,
            &path,
            Some(json!({"path": "purpose", "base": ["00"], "splices": []})),
        )
        .await;
    assert!(status.is_client_error());
    let now = page
        .ok(Method::GET, &format!("/api/documents/{doc}"), None)
        .await;
    assert_eq!(purpose(&now), purpose(&third["document"]));
}

#[tokio::test]
async fn lists_dates_and_choices_are_edited_by_path() {
    let (page, _ws) = Page::new("Alpha Trust").await;
    let (_, doc) = mou(&page).await;
    let added = page
        .ok(
            Method::POST,
            &format!("/api/documents/{doc}/items"),
            Some(json!({"list": "milestones", "values": []})),
        )
        .await;
    let item = added["item"].as_str().unwrap();
    let set = |path: String, value: &str| json!({"path": path, "value": value});
    page.ok(
        Method::POST,
        &format!("/api/documents/{doc}/set"),
        Some(set(format!("milestones.{item}.due"), "2027-03-31")),
    )
    .await;
    let answer = page
        .ok(
            Method::POST,
            &format!("/api/documents/{doc}/set"),
            Some(set(format!("milestones.{item}.status"), "done")),
        )
        .await;
    let milestones = answer["document"]["sections"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["key"] == "milestones")
        .unwrap()
        .clone();
    assert_eq!(milestones["shape"], "list");
    let items = milestones["items"].as_array().unwrap();
    let fields = &items.iter().find(|i| i["id"] == item).unwrap()["fields"];
    let value = |key: &str| {
        fields
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["key"] == key)
            .unwrap()
            .clone()
    };
    assert_eq!(value("due")["value"], "2027-03-31");
    assert_eq!(value("due")["type"], "date");
    assert_eq!(value("status")["value"], "done");
    assert!(
        value("status")["choices"]
            .as_array()
            .unwrap()
            .contains(&json!("at-risk"))
    );

    let (status, body) = page
        .call(
            Method::POST,
            &format!("/api/documents/{doc}/set"),
            Some(set(format!("milestones.{item}.due"), "next week")),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");

    let removed = page
        .ok(
            Method::POST,
            &format!("/api/documents/{doc}/remove"),
            Some(json!({"item": format!("milestones.{item}")})),
        )
        .await;
    let milestones = removed["document"]["sections"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["key"] == "milestones")
        .unwrap()
        .clone();
    assert_eq!(
        milestones["items"].as_array().unwrap().len(),
        items.len() - 1
    );
    assert!(
        milestones["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|i| i["id"] != item)
    );
}

#[tokio::test]
async fn a_member_who_is_not_a_decision_maker_reads_but_cannot_edit() {
    let (page, ws) = Page::new("Alpha Trust").await;
    let (pid, doc) = mou(&page).await;
    let other = accord_identity::OrgSecret::from_seed([7; 32]).public();
    page.ok(
        Method::POST,
        &format!("/api/partnerships/{pid}/members"),
        Some(json!({"name": "Beta Centre", "key": other.to_hex(), "role": "decision-maker"})),
    )
    .await;
    let invite = page
        .ok(
            Method::POST,
            &format!("/api/partnerships/{pid}/invites"),
            Some(json!({"member": other.to_hex()})),
        )
        .await;
    assert!(
        invite["code"]
            .as_str()
            .unwrap()
            .starts_with("accord-invite:")
    );
    // Alpha steps back to consultee: the page must now be read-only for it.
    let me = ws.whoami().key.to_hex();
    page.ok(
        Method::POST,
        &format!("/api/partnerships/{pid}/members/{me}/role"),
        Some(json!({"role": "consultee"})),
    )
    .await;

    let shown = page
        .ok(Method::GET, &format!("/api/documents/{doc}"), None)
        .await;
    assert_eq!(shown["editable"], false);
    assert_eq!(shown["role"], "consultee");
    let (status, body) = page
        .call(Method::POST, &format!("/api/documents/{doc}/splice"), Some(json!({"path": "purpose", "base": shown["heads"], "splices": [{"pos": 0, "delete": 0, "insert": "x"}]})))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("only decision makers"),
        "{body}"
    );
}

#[tokio::test]
async fn history_names_the_organisation_and_exports_render() {
    let (page, _ws) = Page::new("Alpha <Trust>").await;
    let (_, doc) = mou(&page).await;
    let history = page
        .ok(Method::GET, &format!("/api/documents/{doc}/history"), None)
        .await;
    let entries = history["entries"].as_array().unwrap();
    assert!(!entries.is_empty());
    assert!(entries.iter().all(|e| e["org_name"] == "Alpha <Trust>"));

    let request = Request::builder()
        .uri(format!("/export/{doc}/html"))
        .header(header::HOST, HOST)
        .header(header::COOKIE, &page.cookie)
        .body(Body::empty())
        .unwrap();
    let response = send(&page.web, request).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert!(
        response.headers()[header::CONTENT_SECURITY_POLICY]
            .to_str()
            .unwrap()
            .starts_with("default-src 'none'")
    );
    let html = text(response).await;
    assert!(html.contains("<h1>Our MOU</h1>"), "{html}");
}

#[tokio::test]
async fn a_commit_reaches_the_event_stream() {
    let (page, ws) = Page::new("Alpha Trust").await;
    let request = Request::builder()
        .uri("/api/events")
        .header(header::HOST, HOST)
        .header(header::COOKIE, &page.cookie)
        .body(Body::empty())
        .unwrap();
    let response = send(&page.web, request).await;
    assert_eq!(
        response.headers()[header::CONTENT_TYPE],
        "text/event-stream"
    );
    let mut body = response.into_body();
    let web = page.web.clone();
    ws.set_commit_listener(Arc::new(move |committed| web.committed(committed)));
    let roster = ws.create_partnership("P").unwrap();
    let frame = body.frame().await.unwrap().unwrap();
    let data = String::from_utf8(frame.into_data().unwrap().to_vec()).unwrap();
    assert!(data.contains(r#""type":"changed""#), "{data}");
    assert!(data.contains(&roster.id.roster_doc().to_string()), "{data}");

    // Shutting the page down ends the stream (so the listener can stop).
    page.web.shutdown();
    assert!(body.frame().await.is_none());
}
