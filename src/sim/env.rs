//! A made-up process environment for tests: [`MapEnv`], the variables and home directory the
//! credential chain and the `callbacks:` key see, without touching the real ones.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use crate::credentials::Environment;

/// An environment made of a map and an optional home directory. Its `Debug` lists variable
/// names only.
#[derive(Clone, Default)]
pub struct MapEnv {
    vars: BTreeMap<String, String>,
    home: Option<PathBuf>,
}

impl MapEnv {
    /// No variables, no home directory.
    pub fn new() -> Self {
        Self::default()
    }

    /// With variable `name` set to `value`.
    pub fn with_var(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.vars.insert(name.into(), value.into());
        self
    }

    /// With `home` as the home directory.
    pub fn with_home(mut self, home: impl Into<PathBuf>) -> Self {
        self.home = Some(home.into());
        self
    }
}

impl fmt::Debug for MapEnv {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MapEnv")
            .field("vars", &self.vars.keys().collect::<Vec<_>>())
            .field("home", &self.home)
            .finish()
    }
}

impl Environment for MapEnv {
    fn var(&self, name: &str) -> Option<String> {
        self.vars.get(name).cloned()
    }

    fn home_dir(&self) -> Option<PathBuf> {
        self.home.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn map_env_debug_hides_values() {
        const SK: &str = "c2VjcmV0LXNlY3JldC1zZWNyZXQ=";
        let env = MapEnv::new().with_var(crate::credentials::ENV_SECRET_KEY, SK);
        assert!(!format!("{env:?}").contains(SK));
    }
}
