//! TouchDesigner operator paths. Every operator of a config lives in the project component
//! `/project1` (as in a new TouchDesigner project) or in a component nested in it; its *key*
//! (the config's `name`, the graph's node name) is its path below `/project1`: `gain` is
//! `/project1/gain`, `show/gain` is `/project1/show/gain`. The key of `/project1` itself is
//! the empty string; the root `/` above it has no key.
//!
//! Resolution follows TouchDesigner's rules: a relative path starts in a network (the component
//! the asking operator sits in), `.` is that network, `..` its parent, `/…` is absolute.

/// TouchDesigner's path of the project component.
pub const PROJECT: &str = "/project1";

/// Where a path resolved to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Place {
    /// The root component `/`.
    Root,
    /// `/project1` (key `""`) or anything inside it, by key.
    Key(String),
}

impl Place {
    /// The TouchDesigner path (`/`, `/project1`, `/project1/show/gain`).
    pub fn td_path(&self) -> String {
        match self {
            Place::Root => "/".to_string(),
            Place::Key(k) => td_path(k),
        }
    }

    /// The component holding this place (`None` above the root).
    pub fn parent(&self) -> Option<Place> {
        match self {
            Place::Root => None,
            Place::Key(k) if k.is_empty() => Some(Place::Root),
            Place::Key(k) => Some(Place::Key(parent_key(k).to_string())),
        }
    }
}

/// The TouchDesigner path of a key.
pub fn td_path(key: &str) -> String {
    if key.is_empty() {
        PROJECT.to_string()
    } else {
        format!("{PROJECT}/{key}")
    }
}

/// The key of the component holding `key` (`""` for a top-level operator).
pub fn parent_key(key: &str) -> &str {
    key.rsplit_once('/').map_or("", |(p, _)| p)
}

/// The operator's own name: the key's last segment.
pub fn leaf(key: &str) -> &str {
    key.rsplit_once('/').map_or(key, |(_, n)| n)
}

/// Resolves `path` from inside the network `from` (a place that is a component). `None` when
/// it climbs above the root, or names something below the root other than `/project1`.
pub fn resolve(from: &Place, path: &str) -> Option<Place> {
    let path = path.trim();
    let (mut at, rest) = match path.strip_prefix('/') {
        Some(rest) => (Place::Root, rest),
        None => (from.clone(), path),
    };
    for seg in rest.split('/') {
        match seg {
            "" | "." => {}
            ".." => at = at.parent()?,
            name => {
                at = match at {
                    Place::Root if name == &PROJECT[1..] => Place::Key(String::new()),
                    Place::Root => return None,
                    Place::Key(k) if k.is_empty() => Place::Key(name.to_string()),
                    Place::Key(k) => Place::Key(format!("{k}/{name}")),
                }
            }
        }
    }
    Some(at)
}

/// The key a config reference names: `show/gain`, `/project1/show/gain` and `./show/gain` all
/// name `show/gain` (references in a config start at `/project1`). `None` for a path outside
/// `/project1`.
pub fn key_of(path: &str) -> Option<String> {
    match resolve(&Place::Key(String::new()), path)? {
        Place::Key(k) => Some(k),
        Place::Root => None,
    }
}

/// A name a config may give one operator (one path segment): letters, digits and `_`.
pub fn valid_segment(name: &str) -> bool {
    !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(k: &str) -> Place {
        Place::Key(k.to_string())
    }

    #[test]
    fn touchdesigner_path_rules() {
        let show = key("show");
        assert_eq!(resolve(&show, "x"), Some(key("show/x")));
        assert_eq!(resolve(&show, "./x"), Some(key("show/x")));
        assert_eq!(resolve(&show, "../x"), Some(key("x")));
        assert_eq!(resolve(&show, "sub/x"), Some(key("show/sub/x")));
        assert_eq!(resolve(&show, ".."), Some(key("")));
        assert_eq!(resolve(&show, "../.."), Some(Place::Root));
        assert_eq!(resolve(&show, "../../.."), None);
        assert_eq!(resolve(&show, "/project1/show/x"), Some(key("show/x")));
        assert_eq!(resolve(&show, "/project1"), Some(key("")));
        assert_eq!(resolve(&show, "/"), Some(Place::Root));
        assert_eq!(resolve(&show, "/project2/x"), None);
        assert_eq!(resolve(&key(""), "gain"), Some(key("gain")));
        assert_eq!(resolve(&key(""), "/project1/gain/"), Some(key("gain")));
    }

    #[test]
    fn keys_and_td_paths() {
        assert_eq!(td_path(""), "/project1");
        assert_eq!(td_path("show/gain"), "/project1/show/gain");
        assert_eq!(key("show/gain").parent(), Some(key("show")));
        assert_eq!(key("gain").parent(), Some(key("")));
        assert_eq!(key("").parent(), Some(Place::Root));
        assert_eq!(Place::Root.parent(), None);
        assert_eq!(leaf("show/gain"), "gain");
        assert_eq!(parent_key("gain"), "");
        assert_eq!(key_of("/project1/show/gain").as_deref(), Some("show/gain"));
        assert_eq!(key_of("show/gain").as_deref(), Some("show/gain"));
        assert_eq!(key_of("/"), None);
        assert!(valid_segment("lag1") && !valid_segment("a/b") && !valid_segment(""));
    }
}
