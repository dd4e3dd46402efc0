//! TEMPORARY reference scanner over serde_json (replaced by the fast lazy scanner).
use std::borrow::Cow;

/// Compiled set of field paths; path i fills slot i.
#[derive(Debug, Clone)]
pub struct PathSet {
    paths: Vec<Vec<String>>,
}
impl PathSet {
    /// Compile.
    pub fn new<S: AsRef<str>>(paths: &[S]) -> PathSet {
        PathSet {
            paths: paths
                .iter()
                .map(|p| p.as_ref().split('.').map(str::to_string).collect())
                .collect(),
        }
    }
    /// Number of paths.
    pub fn len(&self) -> usize {
        self.paths.len()
    }
    /// No paths.
    pub fn is_empty(&self) -> bool {
        self.paths.is_empty()
    }
}
/// A scalar at a path.
#[derive(Debug, Clone, PartialEq)]
pub enum Scalar<'a> {
    /// null
    Null,
    /// bool
    Bool(bool),
    /// integer literal
    Int(i64),
    /// other number
    Float(f64),
    /// string
    Str(Cow<'a, str>),
    /// object
    Object,
}
/// Output buffer.
#[derive(Debug, Default)]
pub struct Extracted<'a> {
    slots: Vec<Vec<Scalar<'a>>>,
}
impl<'a> Extracted<'a> {
    /// New.
    pub fn with_slots(n: usize) -> Self {
        Extracted { slots: vec![Vec::new(); n] }
    }
    /// Values of slot.
    pub fn values(&self, slot: usize) -> &[Scalar<'a>] {
        self.slots.get(slot).map(Vec::as_slice).unwrap_or(&[])
    }
    /// Clear.
    pub fn clear(&mut self) {
        self.slots.iter_mut().for_each(Vec::clear);
    }
}
/// Invalid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid JSON at byte {offset}: {reason}")]
pub struct InvalidJson {
    /// offset
    pub offset: usize,
    /// reason
    pub reason: &'static str,
}
/// Extract.
pub fn extract<'a>(
    bytes: &'a [u8],
    paths: &PathSet,
    out: &mut Extracted<'a>,
) -> Result<(), InvalidJson> {
    let v: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|_| InvalidJson { offset: 0, reason: "invalid" })?;
    if !v.is_object() {
        return Err(InvalidJson { offset: 0, reason: "not an object" });
    }
    out.slots.resize(paths.len(), Vec::new());
    out.clear();
    for (i, p) in paths.paths.iter().enumerate() {
        walk(&v, p, &mut out.slots[i]);
    }
    Ok(())
}
fn walk<'a>(v: &serde_json::Value, path: &[String], out: &mut Vec<Scalar<'a>>) {
    use serde_json::Value as V;
    match v {
        V::Array(a) => a.iter().for_each(|x| walk(x, path, out)),
        V::Object(m) if !path.is_empty() => {
            for (k, child) in m {
                let segs: Vec<&str> = k.split('.').collect();
                if segs.len() <= path.len() && segs.iter().zip(path).all(|(a, b)| a == b) {
                    walk(child, &path[segs.len()..], out);
                }
            }
        }
        _ if !path.is_empty() => {}
        V::Object(_) => out.push(Scalar::Object),
        V::Null => out.push(Scalar::Null),
        V::Bool(b) => out.push(Scalar::Bool(*b)),
        V::Number(n) => out.push(match n.as_i64() {
            Some(i) if !n.to_string().contains(['.', 'e', 'E']) => Scalar::Int(i),
            _ => Scalar::Float(n.as_f64().unwrap_or(f64::NAN)),
        }),
        V::String(s) => out.push(Scalar::Str(Cow::Owned(s.clone()))),
    }
}
/// Validate.
pub fn validate(bytes: &[u8]) -> Result<(), InvalidJson> {
    extract(bytes, &PathSet::new::<&str>(&[]), &mut Extracted::default())
}
