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
    let (fresh, mut claims) = keys.issue(1, "alice", bridge::store::users::Role::User, "family");
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
    let (tokens, families) = t.state.store.call(|conn| bridge::store::tokens::live_revocations(conn)).await.unwrap();
    assert_eq!((tokens.len(), families.len()), (1, 1));
}

// See: #8 (logout also revokes the refresh token).
#[tokio::test]
async fn issue_8_logout_without_a_body_revokes_its_refresh_token_too() {
    let t = test_state(&[]).await;
    let (token, refresh) = login(&t.state, "alice").await;
    let (other_access, other_refresh) = login(&t.state, "alice").await;
    let reply = call(&t.state, "POST", "/v1/auth/logout", Some(&token), None).await;
    assert_eq!(reply.status, StatusCode::NO_CONTENT, "{}", reply.text);
    call(&t.state, "POST", "/v1/auth/refresh", None, Some(json!({"refresh_token": refresh})))
        .await
        .problem(StatusCode::UNAUTHORIZED);
    // Another login of the same account stays.
    assert_eq!(call(&t.state, "GET", "/v1/auth/me", Some(&other_access), None).await.status, StatusCode::OK);
    let reply = call(&t.state, "POST", "/v1/auth/refresh", None, Some(json!({"refresh_token": other_refresh}))).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
}

// See: #8 (a detected reuse also revokes the access tokens of that family).
#[tokio::test]
async fn issue_8_refresh_reuse_revokes_the_access_tokens_of_the_login() {
    let t = test_state(&[]).await;
    let (first_access, first) = login(&t.state, "alice").await;
    let rotated = call(&t.state, "POST", "/v1/auth/refresh", None, Some(json!({"refresh_token": first}))).await;
    let access = rotated.body["access_token"].as_str().unwrap().to_owned();
    call(&t.state, "POST", "/v1/auth/refresh", None, Some(json!({"refresh_token": first})))
        .await
        .problem(StatusCode::UNAUTHORIZED);
    for token in [&first_access, &access] {
        let detail = call(&t.state, "GET", "/v1/auth/me", Some(token), None).await.problem(StatusCode::UNAUTHORIZED);
        assert!(detail.contains("revoked"), "{detail}");
    }
}

// See: #8 (login and registration are rate-limited per address and per name).
#[tokio::test]
async fn issue_8_logins_are_throttled_per_address_and_per_name() {
    use axum::body::Body;
    use axum::extract::ConnectInfo;
    let t = test_state(&["--login-rate-per-address", "5", "--login-rate-per-name", "3"]).await;
    let attempt = |address: &str, name: &str| {
        let mut request = axum::http::Request::builder()
            .method("POST")
            .uri("/v1/auth/login")
            .header("content-type", "application/json")
            .body(Body::from(json!({"name": name, "password": "wrong-password"}).to_string()))
            .unwrap();
        request.extensions_mut().insert(ConnectInfo(address.parse::<std::net::SocketAddr>().unwrap()));
        send(&t.state, request)
    };
    for _ in 0..3 {
        assert_eq!(attempt("10.0.0.1:1000", "alice").await.status, StatusCode::UNAUTHORIZED);
    }
    let reply = attempt("10.0.0.1:1000", "alice").await;
    let detail = reply.problem(StatusCode::TOO_MANY_REQUESTS);
    assert!(detail.contains("account name"), "{detail}");
    assert!(reply.headers["retry-after"].to_str().unwrap().parse::<u64>().unwrap() >= 1);
    // The name is limited from every address; other names from this one
    // until the address's budget is gone.
    assert_eq!(attempt("10.0.0.2:1000", "alice").await.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(attempt("10.0.0.1:1000", "bob").await.status, StatusCode::UNAUTHORIZED);
    let detail = attempt("10.0.0.1:1000", "carol").await.problem(StatusCode::TOO_MANY_REQUESTS);
    assert!(detail.contains("client address"), "{detail}");
    // A legitimate user elsewhere still gets in.
    let reply =
        call(&t.state, "POST", "/v1/auth/register", None, Some(json!({"name": "dave", "password": "dave-password"})))
            .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text);
}

// See: #8 (a user cache can never keep a demoted user's old role).
#[test]
fn issue_8_a_stale_read_never_refills_the_user_cache() {
    let cache = bridge::http::UserCache::default();
    let user = |role| bridge::store::users::User {
        id: 1,
        name: "alice".into(),
        password_hash: String::new(),
        role,
        unix_user: None,
        unix_mapped_by: None,
        disabled: false,
        created_at: 0.0,
    };
    // A request read the account (admin) before an admin demoted it...
    let generation = cache.generation();
    cache.forget(1);
    // ...and puts what it read afterwards: dropped.
    cache.put(user(bridge::store::users::Role::Admin), generation);
    assert!(cache.get(1).is_none());
    let generation = cache.generation();
    cache.put(user(bridge::store::users::Role::User), generation);
    assert_eq!(cache.get(1).unwrap().role, bridge::store::users::Role::User);
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
