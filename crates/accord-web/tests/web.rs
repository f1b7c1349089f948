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

/// Adds a member by a made-up key; returns the key's hex.
async fn add_member(page: &Page, pid: &str, name: &str, seed: u8, role: &str) -> String {
    let key = accord_identity::OrgSecret::from_seed([seed; 32])
        .public()
        .to_hex();
    page.ok(
        Method::POST,
        &format!("/api/partnerships/{pid}/members"),
        Some(json!({"name": name, "key": key, "role": role})),
    )
    .await;
    key
}

async fn set_my_role(page: &Page, ws: &Workspace, pid: &str, role: &str) {
    let me = ws.whoami().key.to_hex();
    page.ok(
        Method::POST,
        &format!("/api/partnerships/{pid}/members/{me}/role"),
        Some(json!({"role": role})),
    )
    .await;
}

fn member<'a>(status: &'a Value, name: &str) -> &'a Value {
    status["members"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == name)
        .unwrap_or_else(|| panic!("{name} in {status}"))
}

#[tokio::test]
async fn signing_then_editing_moves_the_signature_to_an_earlier_version() {
    let (page, ws) = Page::new("Alpha Trust").await;
    let (pid, doc) = mou(&page).await;
    let signoffs = format!("/api/documents/{doc}/signoffs");
    let before = page.ok(Method::GET, &signoffs, None).await;
    assert_eq!(before["can_sign"], true);
    assert_eq!(member(&before, "Alpha Trust")["state"], "not-signed");
    assert_eq!(before["summary"]["all_signed"], false);

    let signed = page
        .ok(Method::POST, &signoffs, Some(json!({"statement": "  "})))
        .await;
    let alpha = member(&signed, "Alpha Trust");
    assert_eq!(alpha["state"], "current");
    assert_eq!(alpha["signoff"]["statement"], "We agree to this version");
    assert_eq!(
        alpha["signoff"]["fingerprint"],
        ws.whoami().fingerprint.to_string()
    );
    assert_eq!(signed["summary"]["all_signed"], true);
    assert_eq!(signed["summary"]["signed_current"], json!(["Alpha Trust"]));
    let p = page
        .ok(Method::GET, &format!("/api/partnerships/{pid}"), None)
        .await;
    assert_eq!(
        p["documents"][0]["signoff"]["signed_current"],
        json!(["Alpha Trust"])
    );

    let shown = page
        .ok(Method::GET, &format!("/api/documents/{doc}"), None)
        .await;
    page.ok(Method::POST, &format!("/api/documents/{doc}/splice"), Some(json!({"path": "purpose", "base": shown["heads"], "splices": [{"pos": 0, "delete": 0, "insert": "Changed after signing."}]})))
        .await;
    let after = page.ok(Method::GET, &signoffs, None).await;
    assert_eq!(member(&after, "Alpha Trust")["state"], "earlier");
    assert_eq!(after["summary"]["signed_earlier"], json!(["Alpha Trust"]));
    assert_eq!(after["summary"]["all_signed"], false);
}

#[tokio::test]
async fn a_consultee_comments_but_cannot_sign_and_resolves_only_its_own() {
    let (page, ws) = Page::new("Alpha Trust").await;
    let (pid, doc) = mou(&page).await;
    let comments = format!("/api/documents/{doc}/comments");
    // As a decision maker, Alpha comments (on a quote) first.
    let list = page
        .ok(
            Method::POST,
            &comments,
            Some(json!({"field": "purpose", "text": "Shorter, please.", "quote": "We help"})),
        )
        .await;
    assert_eq!(list["can_comment"], true);
    let first = &list["comments"][0];
    assert_eq!(first["author_name"], "Alpha Trust");
    assert_eq!(first["section"], "purpose");
    assert_eq!(first["quote"], "We help");
    assert_eq!(first["can_resolve"], true);
    let first_id = first["id"].as_str().unwrap().to_owned();

    add_member(&page, &pid, "Beta Centre", 7, "decision-maker").await;
    set_my_role(&page, &ws, &pid, "consultee").await;

    let shown = page
        .ok(Method::GET, &format!("/api/documents/{doc}"), None)
        .await;
    assert_eq!(shown["editable"], false);
    assert_eq!(shown["commentable"], true);
    assert_eq!(
        shown["partnership"]["notes_docs"].as_array().unwrap().len(),
        2,
        "one notes document per member"
    );

    let (status, body) = page
        .call(
            Method::POST,
            &format!("/api/documents/{doc}/signoffs"),
            Some(json!({"statement": "We agree"})),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    let status_now = page
        .ok(Method::GET, &format!("/api/documents/{doc}/signoffs"), None)
        .await;
    assert_eq!(status_now["can_sign"], false);
    assert_eq!(member(&status_now, "Alpha Trust")["state"], "not-signed");

    let list = page
        .ok(
            Method::POST,
            &comments,
            Some(json!({"field": "milestones", "text": "Add a review date."})),
        )
        .await;
    assert_eq!(list["comments"].as_array().unwrap().len(), 2);
    let (status, _) = page
        .call(
            Method::POST,
            &comments,
            Some(json!({"field": "nonsense", "text": "x"})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    // Its own comment, the consultee may resolve.
    let resolved = page
        .ok(
            Method::POST,
            &format!("/api/documents/{doc}/comments/{first_id}/resolve"),
            None,
        )
        .await;
    let first = resolved["comments"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == first_id.as_str())
        .unwrap();
    assert_eq!(first["resolved_by"], "Alpha Trust");
    assert_eq!(first["can_resolve"], false);
    let (status, _) = page
        .call(
            Method::POST,
            &format!("/api/documents/{doc}/comments/NOSUCH/resolve"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn an_informed_party_can_neither_comment_nor_remove_members() {
    let (page, ws) = Page::new("Alpha Trust").await;
    let (pid, doc) = mou(&page).await;
    let beta = add_member(&page, &pid, "Beta Centre", 7, "decision-maker").await;
    let gamma = add_member(&page, &pid, "Gamma Group", 8, "consultee").await;

    // A decision maker removes a member, after the page's confirmation.
    let p = page
        .ok(
            Method::POST,
            &format!("/api/partnerships/{pid}/members/{gamma}/remove"),
            None,
        )
        .await;
    let members = p["members"].as_array().unwrap();
    assert_eq!(members.len(), 2);
    assert!(members.iter().all(|m| m["key"] != gamma.as_str()));

    set_my_role(&page, &ws, &pid, "informed").await;
    let shown = page
        .ok(Method::GET, &format!("/api/documents/{doc}"), None)
        .await;
    assert_eq!(shown["commentable"], false);
    let (status, body) = page
        .call(
            Method::POST,
            &format!("/api/documents/{doc}/comments"),
            Some(json!({"field": "purpose", "text": "May I?"})),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    let list = page
        .ok(Method::GET, &format!("/api/documents/{doc}/comments"), None)
        .await;
    assert_eq!(list["can_comment"], false);
    assert_eq!(list["comments"], json!([]));
    let (status, _) = page
        .call(
            Method::POST,
            &format!("/api/partnerships/{pid}/members/{beta}/remove"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn exports_carry_the_sign_off_block() {
    let (page, ws) = Page::new("Alpha <Trust>").await;
    let (pid, doc) = mou(&page).await;
    add_member(&page, &pid, "Beta Centre", 7, "decision-maker").await;
    page.ok(
        Method::POST,
        &format!("/api/documents/{doc}/signoffs"),
        Some(json!({"statement": "Agreed <at> the board"})),
    )
    .await;
    page.ok(
        Method::POST,
        &format!("/api/documents/{doc}/comments"),
        Some(json!({"field": "purpose", "text": "Name <both> towns", "quote": "our aim"})),
    )
    .await;
    let fingerprint = ws.whoami().fingerprint.to_string();
    let export = |format: &str| {
        Request::builder()
            .uri(format!("/export/{doc}/{format}"))
            .header(header::HOST, HOST)
            .header(header::COOKIE, &page.cookie)
            .body(Body::empty())
            .unwrap()
    };
    let html = text(send(&page.web, export("html")).await).await;
    let block = &html[html
        .find("<h2 id=\"signoff-h\">Sign-off</h2>")
        .expect(&html)..];
    assert!(block.contains("Alpha &lt;Trust&gt;"), "{block}");
    assert!(block.contains(&fingerprint), "{block}");
    assert!(block.contains("signed this version on"), "{block}");
    assert!(block.contains("“Agreed &lt;at&gt; the board”"), "{block}");
    assert!(block.contains("Beta Centre</th>"), "{block}");
    assert!(block.contains("has not signed"), "{block}");
    assert!(
        block.contains("Not every decision maker has signed"),
        "{block}"
    );
    assert!(block.find("</section>") < block.find("<footer>"), "{block}");
    assert!(
        html.contains("<blockquote>our aim</blockquote><p>Name &lt;both&gt; towns</p>"),
        "{html}"
    );

    let md = text(send(&page.web, export("md")).await).await;
    let block = &md[md.find("## Sign-off").expect(&md)..];
    assert!(
        block.contains(&format!(
            "- **Alpha <Trust>** (fingerprint `{fingerprint}`): signed this version on"
        )),
        "{block}"
    );
    assert!(block.contains("\"Agreed <at> the board\""), "{block}");
    assert!(
        block.contains("- **Alpha <Trust>** on `purpose`"),
        "the comments follow: {block}"
    );

    // A copy saved from the page checks out against the replica, as one
    // from `accord export` does; an altered one does not.
    let check = ws.verify_export(&md).unwrap();
    assert!(check.text_matches, "{md}");
    assert_eq!(check.signoffs.len(), 1);
    assert!(check.signoffs[0].1, "{:?}", check.signoffs);
    let altered = md.replacen("# Our MOU", "# Our M0U", 1);
    assert!(!ws.verify_export(&altered).unwrap().text_matches);
}

#[tokio::test]
async fn blame_diff_audit_and_verified_history() {
    let (page, ws) = Page::new("Alpha Trust").await;
    let (pid, doc) = mou(&page).await;
    let shown = page
        .ok(Method::GET, &format!("/api/documents/{doc}"), None)
        .await;
    page.ok(Method::POST, &format!("/api/documents/{doc}/splice"), Some(json!({"path": "purpose", "base": shown["heads"], "splices": [{"pos": 0, "delete": 0, "insert": "We share a hall."}]})))
        .await;
    page.ok(
        Method::POST,
        &format!("/api/documents/{doc}/signoffs"),
        Some(json!({"statement": "Agreed"})),
    )
    .await;

    let history = page
        .ok(Method::GET, &format!("/api/documents/{doc}/history"), None)
        .await;
    let entries = history["entries"].as_array().unwrap();
    assert!(
        entries.iter().all(|e| e["verified"] == true),
        "our own attested changes verify: {history}"
    );

    let blame = page
        .ok(
            Method::GET,
            &format!("/api/documents/{doc}/blame/purpose"),
            None,
        )
        .await;
    assert_eq!(
        blame["spans"],
        json!([{"text": "We share a hall.", "org": ws.whoami().key.to_hex(), "org_name": "Alpha Trust"}])
    );

    let diff = page
        .ok(
            Method::GET,
            &format!("/api/documents/{doc}/diff?from=1&to=current"),
            None,
        )
        .await;
    let sections = diff["sections"].as_array().unwrap();
    let purpose = sections
        .iter()
        .find(|s| s["section"].as_str().unwrap().contains("Purpose"))
        .unwrap_or_else(|| panic!("{diff}"));
    let added: String = purpose["pieces"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["kind"] == "added")
        .map(|p| p["text"].as_str().unwrap())
        .collect();
    assert!(added.contains("hall."), "{diff}");
    // Since Alpha's sign-off, nothing changed.
    let since = page
        .ok(
            Method::GET,
            &format!("/api/documents/{doc}/diff?from=Alpha%20Trust"),
            None,
        )
        .await;
    assert_eq!(since["sections"], json!([]), "{since}");
    let (status, _) = page
        .call(
            Method::GET,
            &format!("/api/documents/{doc}/diff?from=nobody"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    let audit = page
        .ok(Method::GET, &format!("/api/partnerships/{pid}/audit"), None)
        .await;
    let alpha = &audit["organisations"][0];
    assert_eq!(alpha["name"], "Alpha Trust");
    assert_eq!(alpha["signoffs"], 1);
    assert_eq!(alpha["unverified_changes"], 0);
    assert!(alpha["changes"].as_u64().unwrap() >= 2, "{audit}");
    assert_eq!(alpha["documents_touched"], json!(["Our MOU"]));
}
