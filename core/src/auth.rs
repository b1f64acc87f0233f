//! Connect authentication, pure: the caller passes the CONNECT auth object, the legacy
//! headers and the current Unix time; the answer is an [`Identity`] or why not.
//!
//! Three methods (DESIGN.md, "Connect auth"):
//! - HMAC: `{"client_id","ts","sig","slot"?,"mode"?}` with
//!   `sig = hex(HMAC-SHA256(secret, "<ts>:<client_id>"))`; `ts` at most `max_skew` in the past
//!   and at most `max_future_skew` in the future (a signature is a replayable credential for
//!   the whole window, so the future side, which only clock drift needs, is kept short).
//! - JWT HS256: `{"token","slot"?,"mode"?}`; claims `sub` = client id and `exp` (required, in
//!   the future); an optional `slot` claim. When both the token and the auth object give a
//!   slot they must agree (a token bound to a slot cannot be used for another).
//! - Legacy (the seed's, only when enabled and no HMAC/JWT credentials are given): headers
//!   `x-nbb-authid: <id>` and `x-nbb-sign: md5hex("<ts><secret><id>"),<ts>`, same skew rule;
//!   slot 0, commit mode.
//!
//! Signatures are compared in constant time. Failures are either [`AuthError::Unauthorized`]
//! (the client is told only "unauthorized") or [`AuthError::Malformed`] (the client is told
//! precisely what is wrong with its payload).

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use md5::{Digest, Md5};
use serde_json::{Map, Value};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use crate::identity::{Identity, Mode};
use crate::ids::{ClientId, Slot};

/// Which methods are accepted, and the shared secret.
#[derive(Clone, PartialEq, Eq)]
pub struct AuthConfig {
    /// The HMAC/JWT/legacy secret.
    pub secret: Vec<u8>,
    /// Accept HMAC credentials.
    pub hmac: bool,
    /// Accept JWT credentials.
    pub jwt: bool,
    /// Accept the seed's legacy headers.
    pub legacy: bool,
    /// Largest accepted age (`now - ts`) of HMAC and legacy signatures.
    pub max_skew: Duration,
    /// Largest accepted `ts - now` of HMAC and legacy signatures: how far ahead a client's
    /// clock may be. Kept short because a signature stays usable until `ts + max_skew`.
    pub max_future_skew: Duration,
}

impl AuthConfig {
    /// HMAC and JWT on, legacy off, signatures from 900 s old to 60 s ahead.
    pub fn new(secret: impl Into<Vec<u8>>) -> AuthConfig {
        AuthConfig {
            secret: secret.into(),
            hmac: true,
            jwt: true,
            legacy: false,
            max_skew: Duration::from_secs(900),
            max_future_skew: Duration::from_secs(60),
        }
    }
}

impl std::fmt::Debug for AuthConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthConfig")
            .field("secret", &"<hidden>")
            .field("hmac", &self.hmac)
            .field("jwt", &self.jwt)
            .field("legacy", &self.legacy)
            .field("max_skew", &self.max_skew)
            .field("max_future_skew", &self.max_future_skew)
            .finish()
    }
}

/// The seed's legacy headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LegacyHeaders {
    /// `x-nbb-authid`: the client id.
    pub authid: String,
    /// `x-nbb-sign`: `md5hex("<ts><secret><id>"),<ts>`.
    pub sign: String,
}

/// What a connecting client presented.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Credentials {
    /// The Socket.IO CONNECT packet's auth payload, if any.
    pub auth: Option<Value>,
    /// The legacy headers, if both were sent.
    pub legacy: Option<LegacyHeaders>,
}

impl Credentials {
    /// What a Socket.IO handshake presented: the CONNECT `auth` payload, or else the same
    /// fields from the query string ([`query_auth`], for socket.io 1.x and 2.x clients), and
    /// the legacy headers `x-nbb-authid` and `x-nbb-sign` when both were sent.
    pub fn from_handshake<'q>(
        auth: Option<Value>,
        query: impl IntoIterator<Item = (&'q str, &'q str)>,
        authid: Option<&str>,
        sign: Option<&str>,
    ) -> Credentials {
        Credentials {
            auth: auth.or_else(|| query_auth(query)),
            legacy: match (authid, sign) {
                (Some(authid), Some(sign)) => Some(LegacyHeaders {
                    authid: authid.to_owned(),
                    sign: sign.to_owned(),
                }),
                _ => None,
            },
        }
    }
}

/// Connect auth from query parameters, for clients that send no CONNECT auth (socket.io 1.x
/// and 2.x): `client_id`, `ts`, `sig` (HMAC) or `token` (JWT), and `slot`, `mode`. `None` when
/// the query names neither `client_id` nor `token`. Numbers are passed as numbers (the first
/// occurrence of each field counts), so the same checks apply as to a CONNECT payload.
pub fn query_auth<'q>(query: impl IntoIterator<Item = (&'q str, &'q str)>) -> Option<Value> {
    const KEYS: [&str; 6] = ["client_id", "ts", "sig", "token", "slot", "mode"];
    let mut auth = Map::new();
    for (k, v) in query {
        if !KEYS.contains(&k) || auth.contains_key(k) {
            continue;
        }
        let value = match k {
            "ts" | "slot" => v
                .parse::<u64>()
                .map_or_else(|_| Value::from(v), Value::from),
            _ => Value::from(v),
        };
        auth.insert(k.to_owned(), value);
    }
    (auth.contains_key("client_id") || auth.contains_key("token")).then_some(Value::Object(auth))
}

/// Why a connection was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// Well-formed credentials that do not hold (bad, forged or stale signature, expired
    /// token, a disabled method, none at all). The reason is for the server's log only.
    #[error("unauthorized: {0}")]
    Unauthorized(String),
    /// The auth payload is malformed; the reason is told to the client.
    #[error("malformed auth payload: {0}")]
    Malformed(String),
}

impl AuthError {
    /// What the client is told in its CONNECT_ERROR `message`.
    pub fn client_message(&self) -> String {
        match self {
            AuthError::Unauthorized(_) => "unauthorized".into(),
            AuthError::Malformed(reason) => reason.clone(),
        }
    }
}

fn unauthorized(reason: impl Into<String>) -> AuthError {
    AuthError::Unauthorized(reason.into())
}

fn malformed(reason: impl Into<String>) -> AuthError {
    AuthError::Malformed(reason.into())
}

/// Verifies `creds` at `now_unix_secs`.
///
/// # Errors
/// [`AuthError`] when the credentials are malformed or do not hold.
pub fn authenticate(
    cfg: &AuthConfig,
    creds: &Credentials,
    now_unix_secs: u64,
) -> Result<Identity, AuthError> {
    let empty = Map::new();
    let obj = match &creds.auth {
        None | Some(Value::Null) => &empty,
        Some(Value::Object(o)) => o,
        Some(_) => return Err(malformed("auth must be a JSON object")),
    };
    if obj.contains_key("token") {
        if !cfg.jwt {
            return Err(unauthorized("JWT auth is disabled"));
        }
        return jwt(cfg, obj, now_unix_secs);
    }
    if obj.contains_key("sig") || obj.contains_key("client_id") {
        if !cfg.hmac {
            return Err(unauthorized("HMAC auth is disabled"));
        }
        return hmac_auth(cfg, obj, now_unix_secs);
    }
    match &creds.legacy {
        Some(h) if cfg.legacy => legacy(cfg, h, now_unix_secs),
        Some(_) => Err(unauthorized("legacy header auth is disabled")),
        None => Err(unauthorized("no credentials")),
    }
}

/// The optional `slot` field of the auth object.
fn slot_field(obj: &Map<String, Value>) -> Result<Option<Slot>, AuthError> {
    match obj.get("slot") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => n
            .as_i64()
            .and_then(|n| Slot::new(n).ok())
            .map(Some)
            .ok_or_else(|| {
                malformed(format!(
                    "slot must be a whole number from 0 to 15, found {n}"
                ))
            }),
        Some(_) => Err(malformed("slot must be a whole number from 0 to 15")),
    }
}

/// The optional `mode` field of the auth object.
fn mode_field(obj: &Map<String, Value>) -> Result<Mode, AuthError> {
    match obj.get("mode") {
        None | Some(Value::Null) => Ok(Mode::Ack),
        Some(Value::String(s)) => Mode::parse(s)
            .ok_or_else(|| malformed(format!("mode must be \"ack\" or \"commit\", found {s:?}"))),
        Some(_) => Err(malformed("mode must be \"ack\" or \"commit\"")),
    }
}

fn client_id(s: &str) -> Result<ClientId, AuthError> {
    ClientId::new(s).map_err(|e| malformed(e.to_string()))
}

/// Whether `ts` is within the allowed window around `now`: at most `max_skew` old and at most
/// `max_future_skew` ahead.
fn fresh(cfg: &AuthConfig, ts: u64, now: u64) -> bool {
    if ts > now {
        ts - now <= cfg.max_future_skew.as_secs()
    } else {
        now - ts <= cfg.max_skew.as_secs()
    }
}

/// Compares a hex signature with the expected bytes in constant time (case-insensitive hex).
fn hex_matches(given: &str, expected: &[u8]) -> bool {
    match hex::decode(given) {
        Ok(bytes) => bytes.ct_eq(expected).into(),
        Err(_) => false,
    }
}

/// The HMAC connect signature a client sends: lowercase hex of
/// HMAC-SHA256(`secret`, `"<ts>:<client_id>"`). For clients, tools and tests written in Rust.
pub fn hmac_hex(secret: &[u8], ts: u64, client_id: &str) -> String {
    hex::encode(hmac_sha256(secret, format!("{ts}:{client_id}").as_bytes()))
}

fn hmac_sha256(key: &[u8], data: &[u8]) -> Vec<u8> {
    // HMAC accepts keys of any length.
    let mut mac = <Hmac<Sha256>>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

fn hmac_auth(cfg: &AuthConfig, obj: &Map<String, Value>, now: u64) -> Result<Identity, AuthError> {
    let client = match obj.get("client_id") {
        Some(Value::String(s)) => client_id(s)?,
        Some(_) => return Err(malformed("client_id must be a string")),
        None => return Err(malformed("client_id is required with sig")),
    };
    let ts = match obj.get("ts") {
        Some(Value::Number(n)) => n
            .as_u64()
            .ok_or_else(|| malformed("ts must be Unix seconds, a whole number"))?,
        Some(_) => return Err(malformed("ts must be Unix seconds, a whole number")),
        None => return Err(malformed("ts is required with sig")),
    };
    let sig = match obj.get("sig") {
        Some(Value::String(s)) => s,
        Some(_) => return Err(malformed("sig must be a hex string")),
        None => return Err(malformed("sig is required with client_id")),
    };
    let slot = slot_field(obj)?.unwrap_or_default();
    let mode = mode_field(obj)?;
    let expected = hmac_sha256(&cfg.secret, format!("{ts}:{}", client.as_str()).as_bytes());
    if !hex_matches(sig, &expected) {
        return Err(unauthorized(format!("bad HMAC signature for {client}")));
    }
    if !fresh(cfg, ts, now) {
        return Err(unauthorized(format!(
            "HMAC signature for {client} outside its time window: ts {ts}, now {now}"
        )));
    }
    Ok(Identity { client, slot, mode })
}

fn jwt(cfg: &AuthConfig, obj: &Map<String, Value>, now: u64) -> Result<Identity, AuthError> {
    let token = match obj.get("token") {
        Some(Value::String(s)) => s,
        _ => return Err(malformed("token must be a string")),
    };
    let mut parts = token.split('.');
    let (Some(h), Some(c), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(malformed("token must be a JWT: three base64url parts"));
    };
    let decode = |part: &str, what: &str| -> Result<Map<String, Value>, AuthError> {
        let bytes = URL_SAFE_NO_PAD
            .decode(part)
            .map_err(|_| malformed(format!("token {what} is not base64url")))?;
        match serde_json::from_slice(&bytes) {
            Ok(Value::Object(m)) => Ok(m),
            _ => Err(malformed(format!("token {what} is not a JSON object"))),
        }
    };
    let header = decode(h, "header")?;
    if header.get("alg") != Some(&Value::String("HS256".into())) {
        return Err(unauthorized("token alg is not HS256"));
    }
    let signature = URL_SAFE_NO_PAD
        .decode(s)
        .map_err(|_| malformed("token signature is not base64url"))?;
    let expected = hmac_sha256(&cfg.secret, format!("{h}.{c}").as_bytes());
    if !bool::from(signature.ct_eq(&expected)) {
        return Err(unauthorized("bad token signature"));
    }
    let claims = decode(c, "claims")?;
    let client = match claims.get("sub") {
        Some(Value::String(s)) => client_id(s)?,
        _ => return Err(malformed("token sub must be the client id, a string")),
    };
    let exp = match claims.get("exp").and_then(Value::as_u64) {
        Some(e) => e,
        None => return Err(malformed("token exp is required, Unix seconds")),
    };
    if exp <= now {
        return Err(unauthorized(format!(
            "token of {client} expired at {exp}, now {now}"
        )));
    }
    let claim_slot = slot_field(&claims)?;
    let field_slot = slot_field(obj)?;
    let slot = match (claim_slot, field_slot) {
        (Some(a), Some(b)) if a != b => {
            return Err(malformed(format!(
                "slot {b} differs from the token's slot {a}"
            )));
        }
        (a, b) => a.or(b).unwrap_or_default(),
    };
    let mode = mode_field(obj)?;
    Ok(Identity { client, slot, mode })
}

fn legacy(cfg: &AuthConfig, h: &LegacyHeaders, now: u64) -> Result<Identity, AuthError> {
    let client = client_id(&h.authid)?;
    let Some((sig, ts)) = h.sign.split_once(',') else {
        return Err(malformed("x-nbb-sign must be \"<md5 hex>,<ts>\""));
    };
    let ts: u64 = ts
        .trim()
        .parse()
        .map_err(|_| malformed("x-nbb-sign's ts must be Unix seconds"))?;
    let mut md5 = Md5::new();
    md5.update(ts.to_string().as_bytes());
    md5.update(&cfg.secret);
    md5.update(client.as_str().as_bytes());
    let expected = md5.finalize();
    if !hex_matches(sig.trim(), &expected) {
        return Err(unauthorized(format!("bad legacy signature for {client}")));
    }
    if !fresh(cfg, ts, now) {
        return Err(unauthorized(format!(
            "legacy signature for {client} outside its time window: ts {ts}, now {now}"
        )));
    }
    Ok(Identity {
        client,
        slot: Slot::default(),
        mode: Mode::Commit,
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    // Vectors computed independently with Python's hmac/hashlib/base64 (secret "s3cret").
    const HMAC_1764000000_U42: &str =
        "ecafdfd0f021b85c06bf580ebdc8de634a403e671d2baef4a194ffe462d32150";
    const JWT_OK: &str = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJ1NDIiLCJleHAiOjE3NjQwMDA2MDB9.IryJIVVwRqWcwP3wcH1oegyEuh1ID0iejdgXYDpr-I4";
    const JWT_SLOT3: &str = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJ1NDIiLCJleHAiOjE3NjQwMDA2MDAsInNsb3QiOjN9.RUdhN89UqYQF-CJRvX4QjihV4vlMxqOiulJFrSLThhg";
    const JWT_NO_EXP: &str = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJ1NDIifQ.bEu_ilagLrn-ifT6KJtz88h8mDn2bUO75rGtPKHUY7I";
    const JWT_WRONG_KEY: &str = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJ1NDIiLCJleHAiOjE3NjQwMDA2MDB9.CrosPN3LTVDSG368J3NWE9lxbRS_h876Xa6lmHjwa-U";
    const JWT_ALG_NONE: &str =
        "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.eyJzdWIiOiJ1NDIiLCJleHAiOjE3NjQwMDA2MDB9.";
    const MD5_1764000000_U42: &str = "86b15b14a3a59c864be186658766ed3c";
    const NOW: u64 = 1_764_000_000;

    fn cfg() -> AuthConfig {
        let mut c = AuthConfig::new("s3cret");
        c.legacy = true;
        c
    }

    fn auth(v: Value) -> Credentials {
        Credentials {
            auth: Some(v),
            legacy: None,
        }
    }

    fn ok(v: Value, now: u64) -> Identity {
        authenticate(&cfg(), &auth(v), now).unwrap()
    }

    fn unauth(creds: &Credentials, now: u64) {
        let e = authenticate(&cfg(), creds, now).unwrap_err();
        assert!(matches!(e, AuthError::Unauthorized(_)), "{e:?}");
        assert_eq!(e.client_message(), "unauthorized");
    }

    fn malformed_msg(v: Value) -> String {
        match authenticate(&cfg(), &auth(v), NOW).unwrap_err() {
            AuthError::Malformed(m) => m,
            e => panic!("expected malformed, got {e:?}"),
        }
    }

    #[test]
    fn hmac_hex_matches_the_vector() {
        assert_eq!(hmac_hex(b"s3cret", NOW, "u42"), HMAC_1764000000_U42);
    }

    #[test]
    fn hmac_known_vector() {
        let id = ok(
            json!({"client_id":"u42","ts":NOW,"sig":HMAC_1764000000_U42}),
            NOW + 900,
        );
        assert_eq!(id.client.as_str(), "u42");
        assert_eq!(id.slot, Slot::default());
        assert_eq!(id.mode, Mode::Ack);
        let id = ok(
            json!({"client_id":"u42","ts":NOW,"sig":HMAC_1764000000_U42.to_uppercase(),"slot":5,"mode":"commit"}),
            NOW - 60,
        );
        assert_eq!((id.slot.get(), id.mode), (5, Mode::Commit));
    }

    #[test]
    fn hmac_refusals() {
        let good = json!({"client_id":"u42","ts":NOW,"sig":HMAC_1764000000_U42});
        unauth(&auth(good.clone()), NOW + 901);
        unauth(&auth(good.clone()), NOW - 61);
        unauth(
            &auth(json!({"client_id":"u43","ts":NOW,"sig":HMAC_1764000000_U42})),
            NOW,
        );
        unauth(
            &auth(json!({"client_id":"u42","ts":NOW + 1,"sig":HMAC_1764000000_U42})),
            NOW,
        );
        unauth(&auth(json!({"client_id":"u42","ts":NOW,"sig":"zz"})), NOW);
        let mut off = cfg();
        off.hmac = false;
        assert!(matches!(
            authenticate(&off, &auth(good), NOW),
            Err(AuthError::Unauthorized(_))
        ));
        assert!(
            malformed_msg(json!({"client_id":"u 42","ts":NOW,"sig":"00"})).contains("client id")
        );
        assert!(malformed_msg(json!({"client_id":"u42","ts":"x","sig":"00"})).contains("ts"));
        assert!(malformed_msg(json!({"client_id":"u42","ts":NOW})).contains("sig"));
        assert!(
            malformed_msg(json!({"client_id":"u42","ts":NOW,"sig":HMAC_1764000000_U42,"slot":16}))
                .contains("slot")
        );
        assert!(
            malformed_msg(
                json!({"client_id":"u42","ts":NOW,"sig":HMAC_1764000000_U42,"mode":"push"})
            )
            .contains("mode")
        );
        assert!(malformed_msg(json!("token")).contains("object"));
    }

    #[test]
    fn a_signature_from_the_future_is_accepted_only_within_max_future_skew() {
        // One signature is usable from `ts - max_future_skew` to `ts + max_skew`: a `ts` far
        // ahead would make it a long-lived replayable credential.
        let good = json!({"client_id":"u42","ts":NOW,"sig":HMAC_1764000000_U42});
        ok(good.clone(), NOW - 60);
        unauth(&auth(good.clone()), NOW - 61);
        unauth(&auth(good.clone()), NOW - 900);
        let mut wide = cfg();
        wide.max_future_skew = Duration::from_secs(300);
        assert!(authenticate(&wide, &auth(good.clone()), NOW - 300).is_ok());
        assert!(authenticate(&wide, &auth(good), NOW - 301).is_err());
        // The past side is unchanged.
        ok(
            json!({"client_id":"u42","ts":NOW,"sig":HMAC_1764000000_U42}),
            NOW + 900,
        );
        // The same rule for the legacy headers.
        let legacy = |now| {
            authenticate(
                &cfg(),
                &Credentials {
                    auth: None,
                    legacy: Some(LegacyHeaders {
                        authid: "u42".into(),
                        sign: format!("{MD5_1764000000_U42},{NOW}"),
                    }),
                },
                now,
            )
        };
        assert!(legacy(NOW - 60).is_ok());
        assert!(matches!(legacy(NOW - 61), Err(AuthError::Unauthorized(_))));
    }

    #[test]
    fn jwt_known_vectors() {
        let id = ok(json!({"token":JWT_OK}), NOW);
        assert_eq!(id.client.as_str(), "u42");
        assert_eq!(ok(json!({"token":JWT_OK,"slot":2}), NOW).slot.get(), 2);
        assert_eq!(ok(json!({"token":JWT_SLOT3}), NOW).slot.get(), 3);
        assert_eq!(ok(json!({"token":JWT_SLOT3,"slot":3}), NOW).slot.get(), 3);
        assert!(malformed_msg(json!({"token":JWT_SLOT3,"slot":4})).contains("differs"));
        unauth(&auth(json!({"token":JWT_OK})), NOW + 600);
        unauth(&auth(json!({"token":JWT_WRONG_KEY})), NOW);
        unauth(&auth(json!({"token":JWT_ALG_NONE})), NOW);
        assert!(malformed_msg(json!({"token":JWT_NO_EXP})).contains("exp"));
        assert!(malformed_msg(json!({"token":"a.b"})).contains("three"));
        assert!(malformed_msg(json!({"token":5})).contains("string"));
    }

    #[test]
    fn legacy_known_vector() {
        let creds = |sign: String| Credentials {
            auth: None,
            legacy: Some(LegacyHeaders {
                authid: "u42".into(),
                sign,
            }),
        };
        let id = authenticate(&cfg(), &creds(format!("{MD5_1764000000_U42},{NOW}")), NOW).unwrap();
        assert_eq!(
            (id.client.as_str(), id.slot.get(), id.mode),
            ("u42", 0, Mode::Commit)
        );
        unauth(&creds(format!("{MD5_1764000000_U42},{NOW}")), NOW + 901);
        unauth(&creds(format!("{MD5_1764000000_U42},{}", NOW + 1)), NOW);
        let mut off = cfg();
        off.legacy = false;
        assert!(matches!(
            authenticate(&off, &creds(format!("{MD5_1764000000_U42},{NOW}")), NOW),
            Err(AuthError::Unauthorized(_))
        ));
        assert!(matches!(
            authenticate(&cfg(), &creds("nocomma".into()), NOW),
            Err(AuthError::Malformed(_))
        ));
    }

    #[test]
    fn no_credentials_is_unauthorized() {
        unauth(&Credentials::default(), NOW);
        unauth(&auth(json!({})), NOW);
    }

    #[test]
    fn debug_hides_the_secret() {
        assert!(!format!("{:?}", cfg()).contains("s3cret"));
    }

    fn pairs<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Iterator<Item = (&'a str, &'a str)> {
        pairs.iter().copied()
    }

    #[test]
    fn query_auth_takes_the_known_fields_with_numbers_as_numbers() {
        let q = pairs(&[
            ("EIO", "3"),
            ("client_id", "u42"),
            ("ts", "1764000000"),
            ("sig", "ab"),
            ("slot", "2"),
            ("client_id", "second"),
            ("other", "x"),
        ]);
        assert_eq!(
            query_auth(q),
            Some(json!({"client_id": "u42", "ts": 1_764_000_000, "sig": "ab", "slot": 2}))
        );
        // A malformed number stays a string, for the same error as in a CONNECT payload.
        assert_eq!(
            query_auth(pairs(&[("client_id", "u"), ("ts", "soon")])),
            Some(json!({"client_id": "u", "ts": "soon"}))
        );
        assert_eq!(
            query_auth(pairs(&[("token", "a.b.c")])),
            Some(json!({"token": "a.b.c"}))
        );
        assert_eq!(query_auth(pairs(&[("EIO", "3"), ("t", "x")])), None);
    }
}
