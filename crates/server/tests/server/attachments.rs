//! Attachments against a started dev server over real HTTP: createUpload, the signed upload
//! URL, sendMessage with attachmentIds, reading back, the signed download URL and its
//! headers, and every refusal (expired and forged URLs, foreign chats and applications,
//! type and size lies, a second use, HTML).

use crate::common;

use chat_domain::ServerKey;
use chat_domain::attachments::{UploadId, UrlPurpose, UrlSigner};
use chat_domain::{Clock, Timestamp};
use common::ws::WsClient;
use common::*;
use serde_json::{Value, json};

const CREATE_UPLOAD: &str = "mutation($a: ID!, $c: Int!, $n: String!, $t: String!, $s: Int!) { createUpload(appToken: $a, chatNumber: $c, fileName: $n, contentType: $t, size: $s) { id url method headers { name value } expiresAt } }";
const SEND_FILES: &str = "mutation($a: ID!, $c: Int!, $b: String, $ids: [ID!], $k: ID) { sendMessage(appToken: $a, chatNumber: $c, body: $b, attachmentIds: $ids, clientMessageId: $k) { number body attachments { name contentType size url width height } } }";
const MESSAGE: &str = "query($a: ID!, $c: Int!, $n: Int!) { message(appToken: $a, chatNumber: $c, number: $n) { number deleted attachments { name contentType size url width height } } }";

/// A PNG of `width` x `height` as far as any reader of headers is concerned, padded with
/// `extra` bytes.
fn png(width: u32, height: u32, extra: usize) -> Vec<u8> {
    let mut png = b"\x89PNG\r\n\x1a\n\0\0\0\x0dIHDR".to_vec();
    png.extend_from_slice(&width.to_be_bytes());
    png.extend_from_slice(&height.to_be_bytes());
    png.extend_from_slice(&[8, 6, 0, 0, 0, 0, 0, 0, 0]);
    png.extend(std::iter::repeat_n(0u8, extra));
    png
}

struct Setup {
    server: TestServer,
    app: TestApp,
    customer: String,
    agent: String,
    chat: i64,
}

async fn setup() -> Setup {
    let server = TestServer::start();
    let app = TestApp::create(&server, "Files Inc").await;
    let customer = app.customer("c1");
    let agent = app.agent("a1");
    let chat = open_chat(&server, &app, &customer).await;
    Setup {
        server,
        app,
        customer,
        agent,
        chat,
    }
}

impl Setup {
    async fn create_upload(
        &self,
        token: &str,
        chat: i64,
        name: &str,
        ty: &str,
        size: usize,
    ) -> Value {
        self.server
            .ok(
                token,
                CREATE_UPLOAD,
                json!({ "a": self.app.token, "c": chat, "n": name, "t": ty, "s": size }),
            )
            .await["createUpload"]
            .clone()
    }

    /// PUTs `bytes` to the upload's URL with the headers it names; the HTTP status.
    async fn put(&self, upload: &Value, bytes: Vec<u8>) -> u16 {
        assert_eq!(upload["method"], "PUT");
        let mut request = self
            .server
            .client()
            .put(upload["url"].as_str().unwrap())
            .body(bytes);
        for header in upload["headers"].as_array().unwrap() {
            request = request.header(
                header["name"].as_str().unwrap(),
                header["value"].as_str().unwrap(),
            );
        }
        request.send().await.expect("PUT").status().as_u16()
    }

    /// createUpload + PUT: the upload's id.
    async fn uploaded(&self, token: &str, name: &str, ty: &str, bytes: Vec<u8>) -> String {
        let upload = self
            .create_upload(token, self.chat, name, ty, bytes.len())
            .await;
        assert_eq!(self.put(&upload, bytes).await, 200);
        upload["id"].as_str().unwrap().to_owned()
    }

    async fn send_files(
        &self,
        token: &str,
        chat: i64,
        body: Option<&str>,
        ids: &[&str],
    ) -> (u16, Value) {
        self.server
            .post(
                Some(token),
                SEND_FILES,
                json!({ "a": self.app.token, "c": chat, "b": body, "ids": ids }),
            )
            .await
    }

    async fn send_code(&self, token: &str, chat: i64, ids: &[&str]) -> String {
        let (_, body) = self.send_files(token, chat, None, ids).await;
        body["errors"][0]["extensions"]["code"]
            .as_str()
            .unwrap_or_else(|| panic!("expected an error: {body}"))
            .to_owned()
    }

    fn signer(&self) -> UrlSigner {
        let text = std::fs::read_to_string(self.server.data_dir.join("server.key")).unwrap();
        UrlSigner::new(ServerKey::decode(&text).unwrap())
    }
}

/// PUTs `chunks` chunks of `size` bytes with `Transfer-Encoding: chunked` (no length
/// announced) over a plain TCP connection; the response's status.
async fn put_chunked(url: &str, chunks: usize, size: usize) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let rest = url.strip_prefix("http://").unwrap();
    let (host, path) = rest.split_at(rest.find('/').unwrap());
    let mut socket = tokio::net::TcpStream::connect(host).await.unwrap();
    let head = format!(
        "PUT {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: text/plain\r\n\
         Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    );
    socket.write_all(head.as_bytes()).await.unwrap();
    for _ in 0..chunks {
        let chunk = format!("{size:x}\r\n{}\r\n", "a".repeat(size));
        // The server may answer and close before every chunk is sent.
        if socket.write_all(chunk.as_bytes()).await.is_err() {
            break;
        }
    }
    let _ = socket.write_all(b"0\r\n\r\n").await;
    let mut answer = Vec::new();
    let _ = socket.read_to_end(&mut answer).await;
    let answer = String::from_utf8_lossy(&answer);
    answer
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("no HTTP status in {answer:?}"))
}

async fn get(server: &TestServer, url: &str) -> reqwest::Response {
    server.client().get(url).send().await.expect("GET")
}

fn header<'a>(response: &'a reqwest::Response, name: &str) -> &'a str {
    response
        .headers()
        .get(name)
        .map(|v| v.to_str().unwrap())
        .unwrap_or("")
}

#[tokio::test]
async fn upload_send_read_back_and_download() {
    let s = setup().await;
    // Given an image uploaded by the customer straight to its signed URL
    let bytes = png(640, 480, 5_000);
    let upload = s
        .create_upload(
            &s.customer,
            s.chat,
            "../../broken parcel.png",
            "image/png",
            bytes.len(),
        )
        .await;
    assert!(upload["id"].as_str().unwrap().starts_with("up_"));
    assert_eq!(
        upload["headers"],
        json!([{ "name": "Content-Type", "value": "image/png" }])
    );
    assert_eq!(s.put(&upload, bytes.clone()).await, 200);

    // When a message that is only the attachment is sent
    let (_, sent) = s
        .send_files(&s.customer, s.chat, None, &[upload["id"].as_str().unwrap()])
        .await;
    let sent = &sent["data"]["sendMessage"];
    assert_eq!(sent["body"], "");
    let attachment = &sent["attachments"][0];
    assert_eq!(attachment["name"], "broken parcel.png");
    assert_eq!(attachment["contentType"], "image/png");
    assert_eq!(attachment["size"], bytes.len());
    assert_eq!(
        (attachment["width"].clone(), attachment["height"].clone()),
        (json!(640), json!(480))
    );

    // Then the agent reads it back, with a URL of its own, and downloads the same bytes,
    // inline (a safe image) and never sniffed
    let read = s
        .server
        .ok(
            &s.agent,
            MESSAGE,
            json!({ "a": s.app.token, "c": s.chat, "n": sent["number"] }),
        )
        .await;
    let read = &read["message"]["attachments"][0];
    assert_eq!(read["name"], "broken parcel.png");
    let response = get(&s.server, read["url"].as_str().unwrap()).await;
    assert_eq!(response.status(), 200);
    assert_eq!(header(&response, "content-type"), "image/png");
    assert_eq!(header(&response, "x-content-type-options"), "nosniff");
    assert_eq!(
        header(&response, "content-disposition"),
        "inline; filename=\"broken parcel.png\"; filename*=UTF-8''broken%20parcel.png"
    );
    assert_eq!(
        header(&response, "content-security-policy"),
        "default-src 'none'; sandbox"
    );
    assert_eq!(response.bytes().await.unwrap().to_vec(), bytes);

    // A message with a body and two files keeps their order; lists show them too.
    let pdf = b"%PDF-1.7\n%%EOF\n".to_vec();
    let first = s
        .uploaded(&s.agent, "invoice.pdf", "application/pdf", pdf.clone())
        .await;
    let second = s
        .uploaded(&s.agent, "photo.png", "image/png", png(3, 2, 0))
        .await;
    let (_, both) = s
        .send_files(&s.agent, s.chat, Some("Your invoice"), &[&first, &second])
        .await;
    let both = &both["data"]["sendMessage"];
    assert_eq!(both["body"], "Your invoice");
    let names: Vec<&str> = both["attachments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["invoice.pdf", "photo.png"]);
    assert_eq!(both["attachments"][0]["width"], Value::Null);
    let page = s
        .server
        .ok(
            &s.customer,
            "query($a: ID!, $c: Int!) { messages(appToken: $a, chatNumber: $c) { items { number attachments { name } } } chat(appToken: $a, number: $c) { lastMessage { attachments { name url } } } }",
            json!({ "a": s.app.token, "c": s.chat }),
        )
        .await;
    assert_eq!(
        page["messages"]["items"][1]["attachments"],
        json!([{ "name": "invoice.pdf" }, { "name": "photo.png" }])
    );
    let last = &page["chat"]["lastMessage"]["attachments"][0];
    assert_eq!(last["name"], "invoice.pdf");
    let response = get(&s.server, last["url"].as_str().unwrap()).await;
    assert_eq!(header(&response, "content-type"), "application/pdf");
    assert!(header(&response, "content-disposition").starts_with("attachment; "));
    assert_eq!(response.bytes().await.unwrap().to_vec(), pdf);
}

#[tokio::test]
async fn html_is_never_served_as_a_page() {
    let s = setup().await;
    // HTML and SVG are not accepted at all.
    for ty in ["text/html", "image/svg+xml", "application/xhtml+xml"] {
        let code = s
            .server
            .error_code(
                Some(&s.customer),
                CREATE_UPLOAD,
                json!({ "a": s.app.token, "c": s.chat, "n": "x.html", "t": ty, "s": 10 }),
            )
            .await;
        assert_eq!(code, "BadInput", "{ty}");
    }
    // HTML sent as plain text is served as a text download that the browser may not sniff.
    let html = b"<html><body><script>alert(document.cookie)</script></body></html>".to_vec();
    let id = s
        .uploaded(&s.customer, "notes.html", "text/plain", html.clone())
        .await;
    let (_, sent) = s.send_files(&s.customer, s.chat, None, &[&id]).await;
    let url = sent["data"]["sendMessage"]["attachments"][0]["url"]
        .as_str()
        .unwrap()
        .to_owned();
    let response = get(&s.server, &url).await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        header(&response, "content-type"),
        "text/plain; charset=utf-8"
    );
    assert_eq!(header(&response, "x-content-type-options"), "nosniff");
    assert!(
        header(&response, "content-disposition").starts_with("attachment; filename=\"notes.html\""),
        "{}",
        header(&response, "content-disposition")
    );
    assert_eq!(
        header(&response, "content-security-policy"),
        "default-src 'none'; sandbox"
    );
    // HTML declared as an image is refused when it is attached.
    let lie = s.uploaded(&s.customer, "cat.png", "image/png", html).await;
    assert_eq!(s.send_code(&s.customer, s.chat, &[&lie]).await, "BadInput");
}

#[tokio::test]
async fn size_and_type_lies_are_refused() {
    let s = setup().await;
    let declared = 100;
    // More bytes than declared: refused as they arrive (413), and nothing is kept.
    let upload = s
        .create_upload(&s.customer, s.chat, "a.txt", "text/plain", declared)
        .await;
    assert_eq!(s.put(&upload, vec![b'a'; declared + 1]).await, 413);
    // A body streamed without a length (chunked) is cut at the same point.
    assert_eq!(
        put_chunked(upload["url"].as_str().unwrap(), 20, 10).await,
        413
    );
    // Fewer bytes than declared.
    assert_eq!(s.put(&upload, vec![b'a'; declared - 1]).await, 400);
    // Another Content-Type than declared.
    let wrong_type = s
        .server
        .client()
        .put(upload["url"].as_str().unwrap())
        .header("Content-Type", "text/html")
        .body(vec![b'a'; declared])
        .send()
        .await
        .unwrap();
    assert_eq!(wrong_type.status(), 400);
    // Nothing was stored by the refused attempts: sending is refused, the upload is empty.
    let id = upload["id"].as_str().unwrap();
    assert_eq!(s.send_code(&s.customer, s.chat, &[id]).await, "BadInput");
    // The exact size is accepted, and then the file is written once.
    assert_eq!(s.put(&upload, vec![b'a'; declared]).await, 200);
    assert_eq!(s.put(&upload, vec![b'b'; declared]).await, 409);
    // Limits of createUpload.
    for (size, ty) in [
        (0, "text/plain"),
        (25 * 1024 * 1024 + 1, "text/plain"),
        (10, "application/x-msdownload"),
    ] {
        let code = s
            .server
            .error_code(
                Some(&s.customer),
                CREATE_UPLOAD,
                json!({ "a": s.app.token, "c": s.chat, "n": "x", "t": ty, "s": size }),
            )
            .await;
        assert_eq!(code, "BadInput", "{size} {ty}");
    }
    // A JPEG that is a PNG.
    let jpeg = s
        .uploaded(&s.customer, "x.jpg", "image/jpeg", png(1, 1, 0))
        .await;
    assert_eq!(s.send_code(&s.customer, s.chat, &[&jpeg]).await, "BadInput");
    // Nothing was sent by any refusal.
    let chat = s
        .server
        .ok(&s.agent, CHAT, json!({ "a": s.app.token, "n": s.chat }))
        .await;
    assert_eq!(chat["chat"]["messagesCount"], 0);
}

#[tokio::test]
async fn expired_and_forged_urls_are_refused() {
    let s = setup().await;
    let id = s
        .uploaded(&s.customer, "a.png", "image/png", png(1, 1, 10))
        .await;
    let (_, sent) = s.send_files(&s.customer, s.chat, None, &[&id]).await;
    let url = sent["data"]["sendMessage"]["attachments"][0]["url"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(get(&s.server, &url).await.status(), 200);
    let base = url.split('?').next().unwrap().to_owned();
    let upload_id = UploadId::parse(&id).unwrap();
    let signer = s.signer();

    // Correctly signed, but expired a second ago.
    let past = Timestamp(chat_domain::SystemClock.now().0 - 1_000);
    let expired = format!(
        "{base}?expires={}&signature={}",
        past.0,
        signer.sign(UrlPurpose::Download, &upload_id, past)
    );
    let response = get(&s.server, &expired).await;
    assert_eq!(response.status(), 403);
    assert!(response.text().await.unwrap().contains("expired"));

    // The expiry moved without a new signature; the signature of an upload URL; none.
    let signature = url.split("signature=").nth(1).unwrap();
    let later = format!("{base}?expires=99999999999999&signature={signature}");
    assert_eq!(get(&s.server, &later).await.status(), 403);
    let future = Timestamp(chat_domain::SystemClock.now().0 + 60_000);
    let upload_signed = format!(
        "{base}?expires={}&signature={}",
        future.0,
        signer.sign(UrlPurpose::Upload, &upload_id, future)
    );
    assert_eq!(get(&s.server, &upload_signed).await.status(), 403);
    assert_eq!(get(&s.server, &base).await.status(), 403);

    // Another file's URL with this id swapped in.
    let other = s
        .uploaded(&s.customer, "b.png", "image/png", png(1, 1, 0))
        .await;
    let swapped = url.replace(&id, &other);
    assert_eq!(get(&s.server, &swapped).await.status(), 403);

    // An expired upload URL takes no bytes.
    let fresh = s
        .create_upload(&s.customer, s.chat, "c.png", "image/png", 10)
        .await;
    let fresh_id = UploadId::parse(fresh["id"].as_str().unwrap()).unwrap();
    let expired_upload = json!({
        "method": "PUT",
        "url": format!(
            "{}/files/{fresh_id}?expires={}&signature={}",
            s.server.url,
            past.0,
            signer.sign(UrlPurpose::Upload, &fresh_id, past)
        ),
        "headers": fresh["headers"],
    });
    assert_eq!(
        s.put(&expired_upload, png(1, 1, 0)[..10].to_vec()).await,
        403
    );
    // A download URL does not upload.
    let download_signed = json!({
        "method": "PUT",
        "url": format!(
            "{}/files/{fresh_id}?expires={}&signature={}",
            s.server.url,
            future.0,
            signer.sign(UrlPurpose::Download, &fresh_id, future)
        ),
        "headers": fresh["headers"],
    });
    assert_eq!(s.put(&download_signed, vec![0; 10]).await, 403);
}

#[tokio::test]
async fn an_upload_is_used_once() {
    let s = setup().await;
    let id = s
        .uploaded(&s.customer, "a.png", "image/png", png(2, 2, 0))
        .await;
    let (_, first) = s.send_files(&s.customer, s.chat, Some("one"), &[&id]).await;
    assert_eq!(first["data"]["sendMessage"]["number"], 1);
    assert_eq!(s.send_code(&s.customer, s.chat, &[&id]).await, "Conflict");
    // Named twice in one message.
    let other = s
        .uploaded(&s.customer, "b.png", "image/png", png(2, 2, 0))
        .await;
    assert_eq!(
        s.send_code(&s.customer, s.chat, &[&other, &other]).await,
        "BadInput"
    );
    // A retried send (same clientMessageId) answers the first message.
    let retry = |k: &str| json!({ "a": s.app.token, "c": s.chat, "b": null, "ids": [other.clone()], "k": k });
    let once = s.server.ok(&s.customer, SEND_FILES, retry("k1")).await;
    let again = s.server.ok(&s.customer, SEND_FILES, retry("k1")).await;
    assert_eq!(
        once["sendMessage"]["number"],
        again["sendMessage"]["number"]
    );
    assert_eq!(
        once["sendMessage"]["attachments"][0]["name"],
        again["sendMessage"]["attachments"][0]["name"]
    );
    assert_eq!(once["sendMessage"]["number"], 2);
    let chat = s
        .server
        .ok(&s.agent, CHAT, json!({ "a": s.app.token, "n": s.chat }))
        .await;
    assert_eq!(chat["chat"]["messagesCount"], 2);
    // A message needs a body or attachments.
    let (_, nothing) = s.send_files(&s.customer, s.chat, None, &[]).await;
    assert_eq!(nothing["errors"][0]["extensions"]["code"], "BadInput");
}

#[tokio::test]
async fn foreign_chats_users_and_applications_are_refused() {
    let s = setup().await;
    // Another customer's chat: its upload target is refused as if the chat did not exist.
    let other_customer = s.app.customer("c2");
    let other_chat = open_chat(&s.server, &s.app, &other_customer).await;
    let code = s
        .server
        .error_code(
            Some(&s.customer),
            CREATE_UPLOAD,
            json!({ "a": s.app.token, "c": other_chat, "n": "x.png", "t": "image/png", "s": 10 }),
        )
        .await;
    assert_eq!(code, "NotFound");

    let mine = s
        .uploaded(&s.customer, "mine.png", "image/png", png(1, 1, 0))
        .await;
    // The uploader in another chat of its own.
    let second_chat = open_chat(&s.server, &s.app, &s.customer).await;
    assert_eq!(
        s.send_code(&s.customer, second_chat, &[&mine]).await,
        "NotFound"
    );
    // Another user (the agent) in the upload's own chat.
    assert_eq!(s.send_code(&s.agent, s.chat, &[&mine]).await, "NotFound");
    // Another customer in its own chat.
    assert_eq!(
        s.send_code(&other_customer, other_chat, &[&mine]).await,
        "NotFound"
    );

    // Another application: its agent can neither upload into this one nor use its uploads.
    let other_app = TestApp::create(&s.server, "Other").await;
    let intruder = other_app.agent("a1");
    let code = s
        .server
        .error_code(
            Some(&intruder),
            CREATE_UPLOAD,
            json!({ "a": s.app.token, "c": s.chat, "n": "x.png", "t": "image/png", "s": 10 }),
        )
        .await;
    assert_eq!(code, "Forbidden");
    let owner = other_app.customer("c1");
    let their_chat = open_chat(&s.server, &other_app, &owner).await;
    let (_, body) = s
        .server
        .post(
            Some(&owner),
            SEND_FILES,
            json!({ "a": other_app.token, "c": their_chat, "ids": [mine] }),
        )
        .await;
    assert_eq!(
        body["errors"][0]["extensions"]["code"], "NotFound",
        "{body}"
    );
    // Nothing of those was sent; the upload is still the customer's to use.
    let (_, sent) = s.send_files(&s.customer, s.chat, None, &[&mine]).await;
    assert_eq!(sent["data"]["sendMessage"]["number"], 1, "{sent}");
    // Its message (and URL) is not shown to another customer or application.
    for (token, app) in [(&other_customer, &s.app.token), (&intruder, &s.app.token)] {
        let (_, body) = s
            .server
            .post(
                Some(token),
                MESSAGE,
                json!({ "a": app, "c": s.chat, "n": 1 }),
            )
            .await;
        assert!(
            body["data"]["message"].is_null(),
            "a stranger saw the message: {body}"
        );
        assert!(!body.to_string().contains("/files/"), "{body}");
    }
}

#[tokio::test]
async fn deleting_a_message_hides_its_attachments_at_once() {
    let s = setup().await;
    let id = s
        .uploaded(&s.customer, "a.png", "image/png", png(1, 1, 0))
        .await;
    let (_, sent) = s
        .send_files(&s.customer, s.chat, Some("oops"), &[&id])
        .await;
    let url = sent["data"]["sendMessage"]["attachments"][0]["url"]
        .as_str()
        .unwrap()
        .to_owned();
    s.server
        .ok(
            &s.agent,
            "mutation($a: ID!, $c: Int!) { deleteMessage(appToken: $a, chatNumber: $c, number: 1) { deleted attachments { name } } }",
            json!({ "a": s.app.token, "c": s.chat }),
        )
        .await;
    let read = s
        .server
        .ok(
            &s.customer,
            MESSAGE,
            json!({ "a": s.app.token, "c": s.chat, "n": 1 }),
        )
        .await;
    assert_eq!(read["message"]["attachments"], json!([]));
    // The URL issued before the deletion stops working at once.
    assert_eq!(get(&s.server, &url).await.status(), 404);
}

#[tokio::test]
async fn subscribers_receive_the_attachments() {
    let s = setup().await;
    let mut agent = WsClient::connect(&s.server.url, &s.agent).await;
    agent
        .subscribe(
            "inbox",
            "subscription($a: ID!) { onInboxMessage(appToken: $a) { number attachments { name size url width height } } }",
            json!({ "a": s.app.token }),
        )
        .await;
    let mut customer = WsClient::connect(&s.server.url, &s.customer).await;
    customer
        .subscribe(
            "chat",
            "subscription($a: ID!, $c: Int!) { onMessage(appToken: $a, chatNumber: $c) { number attachments { name url } } }",
            json!({ "a": s.app.token, "c": s.chat }),
        )
        .await;
    agent.synced().await;
    customer.synced().await;
    let id = s
        .uploaded(&s.customer, "shot.png", "image/png", png(8, 6, 0))
        .await;
    s.send_files(&s.customer, s.chat, None, &[&id]).await;
    let event = agent.next_data("inbox").await;
    let attachment = &event["onInboxMessage"]["attachments"][0];
    assert_eq!(attachment["name"], "shot.png");
    assert_eq!(
        (attachment["width"].clone(), attachment["height"].clone()),
        (json!(8), json!(6))
    );
    let response = get(&s.server, attachment["url"].as_str().unwrap()).await;
    assert_eq!(response.status(), 200);
    let event = customer.next_data("chat").await;
    assert_eq!(event["onMessage"]["attachments"][0]["name"], "shot.png");
}

#[tokio::test]
async fn file_names_are_searchable() {
    let s = setup().await;
    let id = s
        .uploaded(
            &s.customer,
            "invoice-4471.pdf",
            "application/pdf",
            b"%PDF-1.4\n".to_vec(),
        )
        .await;
    s.send_files(&s.customer, s.chat, None, &[&id]).await;
    send(&s.server, &s.app, &s.customer, s.chat, "unrelated words").await;
    const SEARCH: &str = "query($a: ID!, $c: Int!, $q: String!) { searchMessages(appToken: $a, chatNumber: $c, query: $q) { items { number attachments { name } } } }";
    // Indexing follows the change feed: a short lag.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let found = s
            .server
            .ok(
                &s.agent,
                SEARCH,
                json!({ "a": s.app.token, "c": s.chat, "q": "4471" }),
            )
            .await;
        let items = found["searchMessages"]["items"].as_array().unwrap().clone();
        if !items.is_empty() {
            assert_eq!(items.len(), 1);
            assert_eq!(items[0]["number"], 1);
            assert_eq!(items[0]["attachments"][0]["name"], "invoice-4471.pdf");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "never indexed");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}
