//! The client side of SASL for the proxy's own broker connections: PLAIN (RFC 4616) and
//! SCRAM-SHA-256 / SCRAM-SHA-512 (RFC 5802, RFC 7677).
//!
//! Pure message logic, no I/O: [`Authenticator::start`] gives the first message to send,
//! [`Authenticator::step`] takes each server message and says what to send next or that
//! the exchange is complete. `kafka_client` carries the messages in SaslAuthenticate
//! requests. Client connections never come here: their SASL passes through the proxy.

mod scram;

use std::fmt;

use serde::Deserialize;

use scram::Scram;

/// A SASL mechanism the proxy can authenticate its own connections with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum Mechanism {
    /// Username and password in clear (use TLS), RFC 4616.
    #[serde(rename = "PLAIN")]
    Plain,
    /// Salted challenge-response with SHA-256, RFC 7677.
    #[serde(rename = "SCRAM-SHA-256")]
    ScramSha256,
    /// Salted challenge-response with SHA-512.
    #[serde(rename = "SCRAM-SHA-512")]
    ScramSha512,
}

impl Mechanism {
    /// The name Kafka uses for it in SaslHandshake and `sasl.enabled.mechanisms`.
    pub fn name(self) -> &'static str {
        match self {
            Mechanism::Plain => "PLAIN",
            Mechanism::ScramSha256 => "SCRAM-SHA-256",
            Mechanism::ScramSha512 => "SCRAM-SHA-512",
        }
    }
}

impl fmt::Display for Mechanism {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Who the proxy authenticates as, and how. `Debug` never shows the password.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// The mechanism.
    pub mechanism: Mechanism,
    /// The user name.
    pub username: String,
    password: String,
}

impl Credentials {
    /// Credentials for `username` with `password`.
    pub fn new(
        mechanism: Mechanism,
        username: impl Into<String>,
        password: impl Into<String>,
    ) -> Self {
        Credentials {
            mechanism,
            username: username.into(),
            password: password.into(),
        }
    }

    /// The password (handle with care: never log it).
    pub fn password(&self) -> &str {
        &self.password
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("mechanism", &self.mechanism)
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// Why a SASL exchange failed on the client side.
#[derive(Debug, thiserror::Error)]
pub enum SaslError {
    /// The server's message does not follow the mechanism's syntax.
    #[error("malformed {message} from the broker: {reason}")]
    Malformed {
        /// Which message: `server-first message`, `server-final message`.
        message: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// The server's nonce does not start with the client's (a replay or a broken server).
    #[error("the broker's SCRAM nonce does not extend the one the proxy sent")]
    NonceMismatch,
    /// The salted password would be too weak (or too costly) to compute.
    #[error("the broker asks for {got} SCRAM iterations; accepted are {min} to {max}")]
    Iterations {
        /// What the broker asked for.
        got: u32,
        /// Fewest accepted (RFC 7677: 4096).
        min: u32,
        /// Most accepted, so a broker cannot stall the proxy.
        max: u32,
    },
    /// The server ended the exchange with an `e=` error.
    #[error("the broker rejected the SCRAM exchange: {0}")]
    Server(String),
    /// The server could not prove it knows the password: it is not the broker it claims.
    #[error(
        "the broker's SCRAM server signature does not match: it does not know the credentials"
    )]
    ServerSignature,
    /// The server sent a message after the exchange was complete.
    #[error("the broker sent a SASL message after the exchange was complete")]
    Finished,
    /// The system random generator failed to produce a nonce.
    #[error("cannot generate a SCRAM nonce: the system random generator failed")]
    Random,
}

/// What to do after a server message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Send these bytes in the next SaslAuthenticate request.
    Respond(Vec<u8>),
    /// Authentication is complete and verified.
    Done,
}

/// One SASL exchange, client side.
pub struct Authenticator {
    state: State,
}

enum State {
    /// PLAIN: the credentials are sent; any answer without an error code completes it.
    PlainSent,
    /// A SCRAM exchange under way.
    Scram(Box<Scram>),
    /// Nothing more to do.
    Done,
}

impl Authenticator {
    /// Starts an exchange for `credentials`; returns it with the first message to send.
    pub fn start(credentials: &Credentials) -> Result<(Authenticator, Vec<u8>), SaslError> {
        match credentials.mechanism {
            Mechanism::Plain => Ok((
                Authenticator {
                    state: State::PlainSent,
                },
                plain_message(&credentials.username, &credentials.password),
            )),
            Mechanism::ScramSha256 | Mechanism::ScramSha512 => {
                let (scram, first) = Scram::start(credentials, &scram::random_nonce()?)?;
                Ok((
                    Authenticator {
                        state: State::Scram(Box::new(scram)),
                    },
                    first,
                ))
            }
        }
    }

    /// Takes the server's message (`auth_bytes` of a SaslAuthenticate response).
    pub fn step(&mut self, server: &[u8]) -> Result<Step, SaslError> {
        match std::mem::replace(&mut self.state, State::Done) {
            State::PlainSent => Ok(Step::Done),
            State::Done => Err(SaslError::Finished),
            State::Scram(mut scram) => {
                let step = scram.step(server)?;
                if step != Step::Done {
                    self.state = State::Scram(scram);
                }
                Ok(step)
            }
        }
    }

    /// Whether the exchange is complete.
    pub fn is_done(&self) -> bool {
        matches!(self.state, State::Done)
    }
}

/// The PLAIN message: empty authorization id, then user name and password, NUL-separated.
pub fn plain_message(username: &str, password: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(2 + username.len() + password.len());
    out.push(0);
    out.extend_from_slice(username.as_bytes());
    out.push(0);
    out.extend_from_slice(password.as_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_is_nul_user_nul_password_and_completes_on_any_answer() {
        let creds = Credentials::new(Mechanism::Plain, "alice", "s3cret");
        let (mut auth, first) = Authenticator::start(&creds).unwrap();
        assert_eq!(first, b"\0alice\0s3cret");
        assert!(!auth.is_done());
        assert_eq!(auth.step(b"").unwrap(), Step::Done);
        assert!(auth.is_done());
        assert!(matches!(auth.step(b""), Err(SaslError::Finished)));
    }

    #[test]
    fn debug_never_shows_the_password() {
        let creds = Credentials::new(Mechanism::ScramSha512, "alice", "hunter2");
        let shown = format!("{creds:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(
            shown.contains("alice") && shown.contains("redacted"),
            "{shown}"
        );
    }

    #[test]
    fn scram_first_message_uses_a_fresh_random_nonce() {
        let creds = Credentials::new(Mechanism::ScramSha256, "u", "p");
        let (_, a) = Authenticator::start(&creds).unwrap();
        let (_, b) = Authenticator::start(&creds).unwrap();
        let a = String::from_utf8(a).unwrap();
        assert!(a.starts_with("n,,n=u,r="), "{a}");
        assert!(a.len() > "n,,n=u,r=".len() + 16, "{a}");
        assert_ne!(a.as_bytes(), b.as_slice());
    }

    #[test]
    fn mechanism_names_are_kafkas() {
        assert_eq!(Mechanism::Plain.name(), "PLAIN");
        assert_eq!(Mechanism::ScramSha256.to_string(), "SCRAM-SHA-256");
        assert_eq!(Mechanism::ScramSha512.name(), "SCRAM-SHA-512");
    }
}
