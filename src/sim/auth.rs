//! Login sessions of one simulated miner: tokens that expire after inactivity.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tonic::Status;

pub(crate) struct Sessions {
    username: String,
    password: String,
    timeout: Duration,
    tokens: Mutex<HashMap<String, Instant>>,
}

/// More than any collector holds; old sessions are pruned past this.
const MAX_SESSIONS: usize = 64;

impl Sessions {
    pub(crate) fn new(username: String, password: String, timeout: Duration) -> Self {
        Sessions {
            username,
            password,
            timeout,
            tokens: Mutex::default(),
        }
    }

    pub(crate) fn timeout(&self) -> Duration {
        self.timeout
    }

    /// A new 16-character token for the right credentials.
    pub(crate) fn login(&self, username: &str, password: &str) -> Result<String, Status> {
        if username != self.username || password != self.password {
            return Err(Status::unauthenticated("Bad credentials"));
        }
        let token: String = std::iter::repeat_with(fastrand::alphanumeric)
            .take(16)
            .collect();
        let now = Instant::now();
        let mut tokens = self.tokens.lock().unwrap_or_else(|e| e.into_inner());
        tokens.retain(|_, last| now.duration_since(*last) < self.timeout);
        if tokens.len() >= MAX_SESSIONS {
            tokens.clear();
        }
        tokens.insert(token.clone(), now);
        Ok(token)
    }

    /// Checks a call's token and extends its session.
    pub(crate) fn check(&self, token: Option<&str>) -> Result<(), Status> {
        let token = token.ok_or_else(|| {
            Status::unauthenticated("missing authorization token; call Login first")
        })?;
        let now = Instant::now();
        let mut tokens = self.tokens.lock().unwrap_or_else(|e| e.into_inner());
        match tokens.get_mut(token) {
            Some(last) if now.duration_since(*last) < self.timeout => {
                *last = now;
                Ok(())
            }
            Some(_) => {
                tokens.remove(token);
                Err(Status::unauthenticated("session expired; log in again"))
            }
            None => Err(Status::unauthenticated("invalid authorization token")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn login_check_and_expiry() {
        let sessions = Sessions::new("root".into(), "pw".into(), Duration::from_millis(50));
        assert_eq!(
            sessions.login("root", "nope").unwrap_err().message(),
            "Bad credentials"
        );
        let token = sessions.login("root", "pw").unwrap();
        assert_eq!(token.len(), 16);
        assert!(token.chars().all(|c| c.is_ascii_alphanumeric()));
        sessions.check(Some(&token)).unwrap();
        assert!(sessions.check(None).is_err());
        std::thread::sleep(Duration::from_millis(80));
        assert_eq!(
            sessions.check(Some(&token)).unwrap_err().code(),
            tonic::Code::Unauthenticated
        );
    }
}
