use axum::body::Body;
use axum::http::{Request, StatusCode};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::json;

use crate::support::{call, login, send, test_state};

#[tokio::test]
async fn register_login_me() {
    let t = test_state(&[]).await;
    let (token, _) = login(&t.state, "alice").await;
    let me = call(&t.state, "GET", "/v1/auth/me", Some(&token), None).await;
    assert_eq!(me.status, StatusCode::OK, "{}", me.text);
    assert_eq!(me.body["name"], "alice");
    assert_eq!(me.body["role"], "user");
    assert!(me.body.get("password_hash").is_none(), "the hash must never be served");
    // The stored password is an argon2id PHC string, not the password.
    let hash: String = t
        .state
        .store
        .call(|conn| Ok(conn.query_row("SELECT password_hash FROM users WHERE name = 'alice'", [], |r| r.get(0))?))
        .await
        .unwrap();
    assert!(hash.starts_with("$argon2id$"), "{hash}");
}

#[tokio::test]
async fn registration_never_grants_more_than_user() {
    let t = test_state(&[]).await;
    for role in ["admin"] {
        let reply = call(
            &t.state,
            "POST",
            "/v1/auth/register",
            None,
            Some(json!({"name": "mallory", "password": "mallory-password", "role": role})),
        )
        .await;
        assert_eq!(reply.problem(StatusCode::FORBIDDEN), "registration cannot grant a role above user");
    }
    let reply = call(
        &t.state,
        "POST",
        "/v1/auth/register",
        None,
        Some(json!({"name": "vera", "password": "vera-password", "role": "viewer"})),
    )
    .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text);
    assert_eq!(reply.body["role"], "viewer");
    let reply =
        call(&t.state, "POST", "/v1/auth/register", None, Some(json!({"name": "vera", "password": "vera-password"})))
            .await;
    assert_eq!(reply.problem(StatusCode::CONFLICT), "the name \"vera\" is taken");
}

#[tokio::test]
async fn closed_registration_is_refused() {
    let t = test_state(&["--registration", "closed"]).await;
    let reply =
        call(&t.state, "POST", "/v1/auth/register", None, Some(json!({"name": "bob", "password": "bob-password"})))
            .await;
    reply.problem(StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn bad_registrations_name_their_field() {
    let t = test_state(&[]).await;
    let cases = [
        (json!({"name": "Bob", "password": "long-enough"}), "name"),
        (json!({"name": "bob;rm", "password": "long-enough"}), "name"),
        (json!({"name": "bob", "password": "short"}), "password"),
        (json!({"name": "bob", "password": "x".repeat(1025)}), "password"),
    ];
    for (body, field) in cases {
        let reply = call(&t.state, "POST", "/v1/auth/register", None, Some(body.clone())).await;
        reply.problem(StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(reply.body["field"], field, "{body}");
    }
}

#[tokio::test]
async fn malformed_and_mistyped_bodies_are_problems() {
    let t = test_state(&[]).await;
    let raw = |body: &'static str, content_type: &'static str| {
        Request::builder()
            .method("POST")
            .uri("/v1/auth/login")
            .header("content-type", content_type)
            .body(Body::from(body))
            .unwrap()
    };
    send(&t.state, raw("{\"name\": ", "application/json")).await.problem(StatusCode::BAD_REQUEST);
    send(&t.state, raw("{\"name\": 5, \"password\": \"x\"}", "application/json"))
        .await
        .problem(StatusCode::UNPROCESSABLE_ENTITY);
    send(&t.state, raw("{\"name\": \"a\"}", "text/plain")).await.problem(StatusCode::BAD_REQUEST);
    let unknown =
        send(&t.state, raw("{\"name\": \"a\", \"password\": \"b\", \"admin\": true}", "application/json")).await;
    assert!(unknown.problem(StatusCode::UNPROCESSABLE_ENTITY).contains("unknown field"));
}

#[tokio::test]
async fn oversize_body_is_413_naming_the_limit() {
    let t = test_state(&["--max-body-bytes", "2048", "--max-script-bytes", "1024"]).await;
    let body = json!({"name": "alice", "password": "p".repeat(4000)});
    let reply = call(&t.state, "POST", "/v1/auth/login", None, Some(body)).await;
    assert_eq!(reply.problem(StatusCode::PAYLOAD_TOO_LARGE), "request body exceeds 2048 bytes");
}

#[tokio::test]
async fn wrong_password_and_unknown_user_look_alike() {
    let t = test_state(&[]).await;
    login(&t.state, "alice").await;
    let wrong =
        call(&t.state, "POST", "/v1/auth/login", None, Some(json!({"name": "alice", "password": "not-her-password"})))
            .await;
    let unknown =
        call(&t.state, "POST", "/v1/auth/login", None, Some(json!({"name": "nobody", "password": "whatever-123"})))
            .await;
    assert_eq!(wrong.problem(StatusCode::UNAUTHORIZED), unknown.problem(StatusCode::UNAUTHORIZED));
    assert_eq!(wrong.headers["www-authenticate"], "Bearer");
}

/// The claims of `token` signed again: unsigned for `alg: none`, else with
/// `key` and `alg`.
fn forge(token: &str, alg: Option<jsonwebtoken::Algorithm>, key: &[u8]) -> String {
    let claims: serde_json::Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(token.split('.').nth(1).unwrap()).unwrap()).unwrap();
    match alg {
        None => {
            let header = URL_SAFE_NO_PAD.encode(json!({"alg": "none", "typ": "JWT"}).to_string());
            format!("{header}.{}.", URL_SAFE_NO_PAD.encode(claims.to_string()))
        }
        Some(alg) => {
            jsonwebtoken::encode(&jsonwebtoken::Header::new(alg), &claims, &jsonwebtoken::EncodingKey::from_secret(key))
                .unwrap()
        }
    }
}

#[tokio::test]
async fn tampered_unsigned_and_foreign_tokens_are_refused() {
    let t = test_state(&[]).await;
    let (token, _) = login(&t.state, "alice").await;
    let me = |token: String| {
        let state = t.state.clone();
        async move { call(&state, "GET", "/v1/auth/me", Some(&token), None).await }
    };
    // alg: none, no signature.
    me(forge(&token, None, b"")).await.problem(StatusCode::UNAUTHORIZED);
    // HS256 with a key that is not the bridge's.
    me(forge(&token, Some(jsonwebtoken::Algorithm::HS256), b"guessed-key")).await.problem(StatusCode::UNAUTHORIZED);
    // Another algorithm, even with the bridge's own key.
    let key = std::fs::read(t.dir.join("jwt.key")).unwrap();
    me(forge(&token, Some(jsonwebtoken::Algorithm::HS512), &key)).await.problem(StatusCode::UNAUTHORIZED);
    // Claims edited (role: admin) under the original signature.
    let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
    let mut claims: serde_json::Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(&parts[1]).unwrap()).unwrap();
    claims["role"] = json!("admin");
    parts[1] = URL_SAFE_NO_PAD.encode(claims.to_string());
    me(parts.join(".")).await.problem(StatusCode::UNAUTHORIZED);
    // Garbage and a missing header.
    me("not-a-jwt".into()).await.problem(StatusCode::UNAUTHORIZED);
    call(&t.state, "GET", "/v1/auth/me", None, None).await.problem(StatusCode::UNAUTHORIZED);
    // The genuine token still works.
    assert_eq!(me(token).await.status, StatusCode::OK);
}

#[tokio::test]
async fn expired_tokens_are_refused() {
    let t = test_state(&[]).await;
    login(&t.state, "alice").await;
    // A token signed with the bridge's own key whose exp is an hour ago.
    let keys = bridge::auth::jwt::Keys::from_secret(
        &std::fs::read(t.dir.join("jwt.key")).unwrap(),
        std::time::Duration::from_secs(900),
    );
    let (fresh, mut claims) = keys.issue(1, "alice", bridge::store::users::Role::User);
    assert_eq!(call(&t.state, "GET", "/v1/auth/me", Some(&fresh), None).await.status, StatusCode::OK);
    claims.exp -= 7200;
    claims.nbf -= 7200;
    claims.iat -= 7200;
    let key = std::fs::read(t.dir.join("jwt.key")).unwrap();
    let expired =
        jsonwebtoken::encode(&jsonwebtoken::Header::default(), &claims, &jsonwebtoken::EncodingKey::from_secret(&key))
            .unwrap();
    let detail = call(&t.state, "GET", "/v1/auth/me", Some(&expired), None).await.problem(StatusCode::UNAUTHORIZED);
    assert!(detail.contains("Expired"), "{detail}");
}

#[tokio::test]
async fn logout_revokes_the_access_token_at_once() {
    let t = test_state(&[]).await;
    let (token, refresh) = login(&t.state, "alice").await;
    let reply = call(&t.state, "POST", "/v1/auth/logout", Some(&token), Some(json!({"refresh_token": refresh}))).await;
    assert_eq!(reply.status, StatusCode::NO_CONTENT, "{}", reply.text);
    let detail = call(&t.state, "GET", "/v1/auth/me", Some(&token), None).await.problem(StatusCode::UNAUTHORIZED);
    assert!(detail.contains("revoked"), "{detail}");
    // The refresh token of that login died with it.
    call(&t.state, "POST", "/v1/auth/refresh", None, Some(json!({"refresh_token": refresh})))
        .await
        .problem(StatusCode::UNAUTHORIZED);
    // Revocation survives a restart: a new state over the same database.
    let revoked = t.state.store.call(|conn| bridge::store::tokens::live_revocations(conn)).await.unwrap();
    assert_eq!(revoked.len(), 1);
}

#[tokio::test]
async fn refresh_rotates_and_reuse_revokes_the_family() {
    let t = test_state(&[]).await;
    let (_, first) = login(&t.state, "alice").await;
    let rotated = call(&t.state, "POST", "/v1/auth/refresh", None, Some(json!({"refresh_token": first}))).await;
    assert_eq!(rotated.status, StatusCode::OK, "{}", rotated.text);
    let second = rotated.body["refresh_token"].as_str().unwrap().to_owned();
    assert_ne!(second, first);
    let access = rotated.body["access_token"].as_str().unwrap().to_owned();
    assert_eq!(call(&t.state, "GET", "/v1/auth/me", Some(&access), None).await.status, StatusCode::OK);
    // The old token again: reuse. The whole family goes, the new one too.
    let detail = call(&t.state, "POST", "/v1/auth/refresh", None, Some(json!({"refresh_token": first})))
        .await
        .problem(StatusCode::UNAUTHORIZED);
    assert!(detail.contains("already used"), "{detail}");
    call(&t.state, "POST", "/v1/auth/refresh", None, Some(json!({"refresh_token": second})))
        .await
        .problem(StatusCode::UNAUTHORIZED);
    // A second login is another family, unaffected.
    let (_, other) = login(&t.state, "alice").await;
    assert_eq!(
        call(&t.state, "POST", "/v1/auth/refresh", None, Some(json!({"refresh_token": other}))).await.status,
        StatusCode::OK
    );
    // Refresh tokens are stored only as hashes.
    let stored: i64 = t
        .state
        .store
        .call(move |conn| {
            Ok(conn.query_row("SELECT COUNT(*) FROM refresh_tokens WHERE token_hash = ?1", [&other], |r| r.get(0))?)
        })
        .await
        .unwrap();
    assert_eq!(stored, 0);
}
