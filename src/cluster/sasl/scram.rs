//! SCRAM-SHA-256 and SCRAM-SHA-512, client side (RFC 5802, RFC 7677), without channel
//! binding (`n,,`), as Kafka brokers speak it.
//!
//! client-first `n,,n=user,r=cnonce` → server-first `r=cnonce+snonce,s=salt,i=iterations`
//! → client-final `c=biws,r=...,p=proof` → server-final `v=signature` (or `e=error`).
//! The primitives (PBKDF2, HMAC, digests, randomness) come from `ring`.

use std::num::NonZeroU32;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use ring::rand::SecureRandom;
use ring::{digest, hmac, pbkdf2};

use super::{Credentials, Mechanism, SaslError, Step};

/// Fewest iterations accepted (RFC 7677, Kafka's minimum).
pub const MIN_ITERATIONS: u32 = 4096;
/// Most iterations accepted: Kafka brokers store at most 16384; this leaves room for other
/// servers while keeping a hostile broker from stalling the proxy in PBKDF2.
pub const MAX_ITERATIONS: u32 = 65_536;

/// `c=` of client-final: base64 of the GS2 header `n,,` (no channel binding).
const CHANNEL_BINDING: &str = "biws";

/// The hash a SCRAM variant is built on.
#[derive(Clone, Copy)]
struct Hash {
    pbkdf2: pbkdf2::Algorithm,
    hmac: hmac::Algorithm,
    digest: &'static digest::Algorithm,
}

impl Hash {
    fn of(mechanism: Mechanism) -> Hash {
        match mechanism {
            Mechanism::ScramSha512 => Hash {
                pbkdf2: pbkdf2::PBKDF2_HMAC_SHA512,
                hmac: hmac::HMAC_SHA512,
                digest: &digest::SHA512,
            },
            // PLAIN never reaches SCRAM; SHA-256 is the other variant.
            Mechanism::ScramSha256 | Mechanism::Plain => Hash {
                pbkdf2: pbkdf2::PBKDF2_HMAC_SHA256,
                hmac: hmac::HMAC_SHA256,
                digest: &digest::SHA256,
            },
        }
    }

    fn hmac(&self, key: &[u8], data: &[u8]) -> hmac::Tag {
        hmac::sign(&hmac::Key::new(self.hmac, key), data)
    }
}

/// A fresh client nonce: 24 random bytes, base64 (printable, never a comma).
pub fn random_nonce() -> Result<String, SaslError> {
    let mut bytes = [0u8; 24];
    ring::rand::SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| SaslError::Random)?;
    Ok(B64.encode(bytes))
}

/// `=` → `=3D`, `,` → `=2C` (RFC 5802 `saslname`).
pub fn escape_username(name: &str) -> String {
    name.replace('=', "=3D").replace(',', "=2C")
}

/// One SCRAM exchange.
pub struct Scram {
    hash: Hash,
    password: String,
    nonce: String,
    client_first_bare: String,
    state: State,
}

enum State {
    /// client-first sent.
    AwaitServerFirst,
    /// client-final sent; the server must prove itself with this key over this message.
    AwaitServerFinal {
        server_key: hmac::Key,
        auth_message: String,
    },
}

impl Scram {
    /// Starts with client `nonce`; returns the exchange and the client-first message.
    pub fn start(credentials: &Credentials, nonce: &str) -> Result<(Scram, Vec<u8>), SaslError> {
        let client_first_bare = format!("n={},r={nonce}", escape_username(&credentials.username));
        let first = format!("n,,{client_first_bare}").into_bytes();
        let scram = Scram {
            hash: Hash::of(credentials.mechanism),
            password: credentials.password().to_string(),
            nonce: nonce.to_string(),
            client_first_bare,
            state: State::AwaitServerFirst,
        };
        Ok((scram, first))
    }

    /// Takes server-first (→ client-final) or server-final (→ done, verified).
    pub fn step(&mut self, server: &[u8]) -> Result<Step, SaslError> {
        match &self.state {
            State::AwaitServerFirst => {
                let (final_message, state) = self.client_final(server)?;
                self.state = state;
                Ok(Step::Respond(final_message.into_bytes()))
            }
            State::AwaitServerFinal {
                server_key,
                auth_message,
            } => {
                verify_server_final(server, server_key, auth_message)?;
                Ok(Step::Done)
            }
        }
    }

    fn client_final(&self, server_first: &[u8]) -> Result<(String, State), SaslError> {
        const WHAT: &str = "SCRAM server-first message";
        let text = utf8(server_first, WHAT)?;
        let attrs = attributes(text, WHAT)?;
        if attrs.first().is_some_and(|(k, _)| *k == 'm') {
            return Err(malformed(WHAT, "mandatory extension `m=` is not supported"));
        }
        let get = |key: char| {
            attrs
                .iter()
                .find(|(k, _)| *k == key)
                .map(|(_, v)| *v)
                .ok_or_else(|| malformed(WHAT, format!("no `{key}=` attribute")))
        };
        let nonce = get('r')?;
        if !(nonce.starts_with(&self.nonce) && nonce.len() > self.nonce.len()) {
            return Err(SaslError::NonceMismatch);
        }
        let salt = B64
            .decode(get('s')?)
            .map_err(|e| malformed(WHAT, format!("salt is not base64: {e}")))?;
        let iterations: u32 = get('i')?
            .parse()
            .map_err(|_| malformed(WHAT, "iteration count is not a number"))?;
        if !(MIN_ITERATIONS..=MAX_ITERATIONS).contains(&iterations) {
            return Err(SaslError::Iterations {
                got: iterations,
                min: MIN_ITERATIONS,
                max: MAX_ITERATIONS,
            });
        }
        let rounds = NonZeroU32::new(iterations).ok_or(SaslError::Iterations {
            got: iterations,
            min: MIN_ITERATIONS,
            max: MAX_ITERATIONS,
        })?;

        let hash = self.hash;
        let mut salted = vec![0u8; hash.digest.output_len()];
        pbkdf2::derive(
            hash.pbkdf2,
            rounds,
            &salt,
            self.password.as_bytes(),
            &mut salted,
        );
        let client_key = hash.hmac(&salted, b"Client Key");
        let stored_key = digest::digest(hash.digest, client_key.as_ref());
        let without_proof = format!("c={CHANNEL_BINDING},r={nonce}");
        let auth_message = format!("{},{text},{without_proof}", self.client_first_bare);
        let signature = hash.hmac(stored_key.as_ref(), auth_message.as_bytes());
        let proof: Vec<u8> = client_key
            .as_ref()
            .iter()
            .zip(signature.as_ref())
            .map(|(k, s)| k ^ s)
            .collect();
        let server_key = hmac::Key::new(hash.hmac, hash.hmac(&salted, b"Server Key").as_ref());
        let message = format!("{without_proof},p={}", B64.encode(proof));
        Ok((
            message,
            State::AwaitServerFinal {
                server_key,
                auth_message,
            },
        ))
    }
}

fn verify_server_final(
    server_final: &[u8],
    server_key: &hmac::Key,
    auth_message: &str,
) -> Result<(), SaslError> {
    const WHAT: &str = "SCRAM server-final message";
    let text = utf8(server_final, WHAT)?;
    let attrs = attributes(text, WHAT)?;
    match attrs.first() {
        Some(('e', error)) => Err(SaslError::Server((*error).to_string())),
        Some(('v', signature)) => {
            let signature = B64
                .decode(signature)
                .map_err(|e| malformed(WHAT, format!("signature is not base64: {e}")))?;
            hmac::verify(server_key, auth_message.as_bytes(), &signature)
                .map_err(|_| SaslError::ServerSignature)
        }
        _ => Err(malformed(WHAT, "neither `v=` nor `e=`")),
    }
}

fn utf8<'a>(bytes: &'a [u8], what: &'static str) -> Result<&'a str, SaslError> {
    std::str::from_utf8(bytes).map_err(|_| malformed(what, "not UTF-8"))
}

/// Splits `a=x,b=y` into (`a`, `x`), (`b`, `y`).
fn attributes<'a>(text: &'a str, what: &'static str) -> Result<Vec<(char, &'a str)>, SaslError> {
    text.split(',')
        .map(|part| {
            let mut chars = part.chars();
            match (chars.next(), chars.next()) {
                (Some(key), Some('=')) if key.is_ascii_alphabetic() => Ok((key, &part[2..])),
                _ => Err(malformed(what, format!("`{part}` is not an attribute"))),
            }
        })
        .collect()
}

fn malformed(message: &'static str, reason: impl Into<String>) -> SaslError {
    SaslError::Malformed {
        message,
        reason: reason.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(step: Step) -> String {
        match step {
            Step::Respond(bytes) => String::from_utf8(bytes).unwrap(),
            Step::Done => panic!("expected a message to send"),
        }
    }

    fn rfc7677() -> (Scram, String) {
        let creds = Credentials::new(Mechanism::ScramSha256, "user", "pencil");
        let (scram, first) = Scram::start(&creds, "rOprNGfwEbeRWgbNEkqO").unwrap();
        (scram, String::from_utf8(first).unwrap())
    }

    const RFC_SERVER_FIRST: &str = "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,\
                                    s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096";

    #[test]
    fn rfc7677_test_vector() {
        let (mut scram, first) = rfc7677();
        assert_eq!(first, "n,,n=user,r=rOprNGfwEbeRWgbNEkqO");
        let client_final = text(scram.step(RFC_SERVER_FIRST.as_bytes()).unwrap());
        assert_eq!(
            client_final,
            "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,\
             p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
        );
        let server_final = b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=";
        assert_eq!(scram.step(server_final).unwrap(), Step::Done);
    }

    #[test]
    fn wrong_server_signature_is_rejected() {
        let (mut scram, _) = rfc7677();
        scram.step(RFC_SERVER_FIRST.as_bytes()).unwrap();
        let forged = format!("v={}", B64.encode([7u8; 32]));
        assert!(matches!(
            scram.step(forged.as_bytes()),
            Err(SaslError::ServerSignature)
        ));
    }

    #[test]
    fn server_nonce_must_extend_ours() {
        for nonce in ["XXXXNGfwEbeRWgbNEkqO%hvYDpWUa2", "rOprNGfwEbeRWgbNEkqO"] {
            let (mut scram, _) = rfc7677();
            let first = format!("r={nonce},s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096");
            assert!(
                matches!(scram.step(first.as_bytes()), Err(SaslError::NonceMismatch)),
                "{nonce}"
            );
        }
    }

    #[test]
    fn low_and_absurd_iteration_counts_are_rejected() {
        for i in [1u32, 4095, MAX_ITERATIONS + 1] {
            let (mut scram, _) = rfc7677();
            let first = format!("r=rOprNGfwEbeRWgbNEkqOabc,s=W22ZaJ0SNY7soEsUEjb6gQ==,i={i}");
            match scram.step(first.as_bytes()) {
                Err(SaslError::Iterations { got, .. }) => assert_eq!(got, i),
                other => panic!("i={i}: {:?}", other.map(|_| ())),
            }
        }
    }

    #[test]
    fn server_error_text_is_surfaced() {
        let (mut scram, _) = rfc7677();
        scram.step(RFC_SERVER_FIRST.as_bytes()).unwrap();
        let err = scram.step(b"e=invalid-proof").unwrap_err();
        assert!(matches!(&err, SaslError::Server(m) if m == "invalid-proof"));
        assert!(err.to_string().contains("invalid-proof"), "{err}");
    }

    #[test]
    fn malformed_server_first_is_an_error_not_a_panic() {
        for bad in [
            &b""[..],
            b"garbage",
            b"r=rOprNGfwEbeRWgbNEkqOx,i=4096",
            b"r=rOprNGfwEbeRWgbNEkqOx,s=!!!,i=4096",
            b"r=rOprNGfwEbeRWgbNEkqOx,s=AAAA,i=many",
            b"m=ext,r=rOprNGfwEbeRWgbNEkqOx,s=AAAA,i=4096",
            b"\xff\xfe",
        ] {
            let (mut scram, _) = rfc7677();
            assert!(
                matches!(scram.step(bad), Err(SaslError::Malformed { .. })),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn username_is_escaped() {
        assert_eq!(escape_username("a=b,c"), "a=3Db=2Cc");
        let creds = Credentials::new(Mechanism::ScramSha512, "x,y=z", "p");
        let (_, first) = Scram::start(&creds, "abc").unwrap();
        assert_eq!(first, b"n,,n=x=2Cy=3Dz,r=abc");
    }

    /// The server side of SCRAM-SHA-512, computed here from the RFC formulas.
    struct TinyServer {
        stored_key: Vec<u8>,
        server_key: Vec<u8>,
    }

    impl TinyServer {
        fn new(password: &str, salt: &[u8], iterations: u32) -> TinyServer {
            let h = Hash::of(Mechanism::ScramSha512);
            let mut salted = vec![0u8; 64];
            let rounds = NonZeroU32::new(iterations).unwrap();
            pbkdf2::derive(h.pbkdf2, rounds, salt, password.as_bytes(), &mut salted);
            let client_key = h.hmac(&salted, b"Client Key");
            TinyServer {
                stored_key: digest::digest(h.digest, client_key.as_ref())
                    .as_ref()
                    .to_vec(),
                server_key: h.hmac(&salted, b"Server Key").as_ref().to_vec(),
            }
        }

        /// Checks the proof; returns server-final.
        fn finish(&self, auth_message: &str, proof_b64: &str) -> Result<String, String> {
            let h = Hash::of(Mechanism::ScramSha512);
            let proof = B64.decode(proof_b64).unwrap();
            let signature = h.hmac(&self.stored_key, auth_message.as_bytes());
            let client_key: Vec<u8> = proof
                .iter()
                .zip(signature.as_ref())
                .map(|(p, s)| p ^ s)
                .collect();
            if digest::digest(h.digest, &client_key).as_ref() != self.stored_key.as_slice() {
                return Err("e=invalid-proof".into());
            }
            let v = h.hmac(&self.server_key, auth_message.as_bytes());
            Ok(format!("v={}", B64.encode(v)))
        }
    }

    fn sha512_exchange(client_password: &str) -> Result<Step, SaslError> {
        let server = TinyServer::new("s3cret", b"pepper-salt", 4096);
        let creds = Credentials::new(Mechanism::ScramSha512, "quarantine", client_password);
        let (mut scram, first) = Scram::start(&creds, &random_nonce()?)?;
        let first = String::from_utf8(first).unwrap();
        let bare = first.strip_prefix("n,,").unwrap().to_string();
        let nonce = bare.split_once(",r=").unwrap().1;
        let server_first = format!("r={nonce}SERVER,s={},i=4096", B64.encode(b"pepper-salt"));
        let client_final = text(scram.step(server_first.as_bytes())?);
        let (without_proof, proof) = client_final.rsplit_once(",p=").unwrap();
        assert_eq!(without_proof, format!("c=biws,r={nonce}SERVER"));
        let auth_message = format!("{bare},{server_first},{without_proof}");
        let server_final = server.finish(&auth_message, proof).unwrap_or_else(|e| e);
        scram.step(server_final.as_bytes())
    }

    #[test]
    fn sha512_round_trip_against_a_tiny_server() {
        assert_eq!(sha512_exchange("s3cret").unwrap(), Step::Done);
        assert!(matches!(
            sha512_exchange("wrong"),
            Err(SaslError::Server(m)) if m == "invalid-proof"
        ));
    }
}
