//! The parser: a JSON body to a [`SearchRequest`], strictly (every key understood or refused
//! with its path).

use std::collections::HashMap;

use regex_lite::Regex;
use serde_json::{Map, Value};

use crate::date::{self, CalendarUnit, DateFormat, TimeZone};
use crate::error::QueryError;
use crate::limits::Limits;
use crate::sort;
use crate::text;
use crate::topic::Topic;
use crate::value::TermValue;

use super::*;

/// Parse a request body given as bytes: checks the size limit (413) before parsing.
pub fn parse_request_bytes(body: &[u8], limits: &Limits) -> Result<SearchRequest, QueryError> {
    if body.len() > limits.max_body_bytes {
        return Err(QueryError {
            kind: crate::error::ErrorKind::TooLarge,
            reason: format!(
                "query body of {} bytes exceeds the limit of {} bytes",
                body.len(),
                limits.max_body_bytes
            ),
            path: String::new(),
        });
    }
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| QueryError::parsing("", format!("request body is not valid JSON: {e}")))?;
    parse_request(&value, limits)
}

/// Parse and validate a request body.
pub fn parse_request(body: &Value, limits: &Limits) -> Result<SearchRequest, QueryError> {
    let depth = json_depth(body);
    if depth > limits.max_depth {
        return Err(QueryError::illegal(
            "",
            format!("request nesting depth {depth} exceeds the limit of {}", limits.max_depth),
        ));
    }
    let mut p = Parser { limits, paths: Vec::new(), index: HashMap::new(), runtime: Vec::new() };
    let mut o = Obj::new("search", "", body)?;
    // First: the types it declares change how the query and aggregations read their fields.
    if let Some(v) = o.get("runtime_mappings") {
        p.runtime_mappings(v, "runtime_mappings")?;
    }
    let topic = match o.get("topic") {
        Some(Value::String(t)) => Topic::new(t.as_str()).map_err(|_| {
            QueryError::illegal(
                "topic",
                format!("invalid topic name [{t}]: use 1-249 characters of [a-zA-Z0-9._-]"),
            )
        })?,
        Some(_) => return Err(QueryError::parsing("topic", "[topic] must be a string")),
        None => return Err(QueryError::parsing("", "required field [topic] is missing")),
    };
    let query = match o.get("query") {
        Some(q) => p.query(q, "query")?,
        None => Query::MatchAll,
    };
    let aggs = match o.get_either("aggs", "aggregations")? {
        Some((key, v)) => p.aggs(v, key, true)?,
        None => Vec::new(),
    };
    let size = match o.get("size") {
        Some(v) => p.size(v, "size", limits.max_size)?,
        None => 0,
    };
    let sort = match o.get("sort") {
        Some(v) => p.sort(v, "sort")?,
        None => Vec::new(),
    };
    let source = match o.get("_source") {
        Some(v) => source_filter(v, "_source")?,
        None => SourceFilter::default(),
    };
    // `from` and `track_total_hits` are accepted only at their only meaningful values.
    if let Some(v) = o.get("from")
        && v.as_u64() != Some(0)
    {
        return Err(QueryError::illegal(
            "from",
            "[from] other than 0 is not supported on a live query",
        ));
    }
    if let Some(v) = o.get("track_total_hits")
        && v != &Value::Bool(true)
    {
        return Err(QueryError::illegal(
            "track_total_hits",
            "hits.total is always exact: [track_total_hits] can only be true",
        ));
    }
    o.finish()?;
    Ok(SearchRequest { topic, query, aggs, size, sort, source, paths: p.paths, runtime: p.runtime })
}

fn json_depth(v: &Value) -> usize {
    match v {
        Value::Array(a) => 1 + a.iter().map(json_depth).max().unwrap_or(0),
        Value::Object(m) => 1 + m.values().map(json_depth).max().unwrap_or(0),
        _ => 0,
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() { key.to_string() } else { format!("{path}.{key}") }
}

/// An object being parsed: tracks which keys were read so leftovers are rejected.
struct Obj<'v> {
    name: &'static str,
    path: String,
    map: &'v Map<String, Value>,
    used: Vec<&'v str>,
}

impl<'v> Obj<'v> {
    fn new(name: &'static str, path: &str, v: &'v Value) -> Result<Self, QueryError> {
        match v {
            Value::Object(map) => Ok(Obj { name, path: path.to_string(), map, used: Vec::new() }),
            _ => Err(QueryError::parsing(
                path,
                format!("[{name}] expected an object, found {}", kind_of(v)),
            )),
        }
    }

    fn get(&mut self, key: &str) -> Option<&'v Value> {
        let (k, v) = self.map.get_key_value(key)?;
        self.used.push(k.as_str());
        Some(v)
    }

    fn get_either(
        &mut self,
        a: &'static str,
        b: &'static str,
    ) -> Result<Option<(&'static str, &'v Value)>, QueryError> {
        match (self.get(a), self.get(b)) {
            (Some(_), Some(_)) => Err(QueryError::parsing(
                &self.path,
                format!("[{}] cannot have both [{a}] and [{b}]", self.name),
            )),
            (Some(v), None) => Ok(Some((a, v))),
            (None, Some(v)) => Ok(Some((b, v))),
            (None, None) => Ok(None),
        }
    }

    fn child(&self, key: &str) -> String {
        join(&self.path, key)
    }

    fn bool(&mut self, key: &str) -> Result<Option<bool>, QueryError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(Value::String(s)) if s == "true" || s == "false" => Ok(Some(s == "true")),
            Some(v) => Err(QueryError::parsing(
                &self.child(key),
                format!("[{}] [{key}] must be a boolean, found {}", self.name, kind_of(v)),
            )),
        }
    }

    fn string(&mut self, key: &str) -> Result<Option<&'v str>, QueryError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(v) => Err(QueryError::parsing(
                &self.child(key),
                format!("[{}] [{key}] must be a string, found {}", self.name, kind_of(v)),
            )),
        }
    }

    fn number(&mut self, key: &str) -> Result<Option<f64>, QueryError> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => number_of(v).map(Some).ok_or_else(|| {
                QueryError::parsing(
                    &self.child(key),
                    format!("[{}] [{key}] must be a number, found {}", self.name, kind_of(v)),
                )
            }),
        }
    }

    fn required<T>(&self, key: &str, v: Option<T>) -> Result<T, QueryError> {
        v.ok_or_else(|| {
            QueryError::parsing(&self.path, format!("[{}] requires [{key}]", self.name))
        })
    }

    /// Reject every key that was not read.
    fn finish(self) -> Result<(), QueryError> {
        for k in self.map.keys() {
            if !self.used.contains(&k.as_str()) {
                return Err(QueryError::parsing(
                    &self.path,
                    format!("[{}] unknown field [{k}]", self.name),
                ));
            }
        }
        Ok(())
    }

    /// The single `{field: body}` entry of a field-keyed query, ignoring `boost`/`_name`-like
    /// top-level keys that were already read.
    fn single_field(&mut self) -> Result<(&'v str, &'v Value), QueryError> {
        let rest: Vec<(&'v String, &'v Value)> =
            self.map.iter().filter(|(k, _)| !self.used.contains(&k.as_str())).collect();
        match rest.as_slice() {
            [(k, v)] => {
                self.used.push(k.as_str());
                Ok((k.as_str(), v))
            }
            [] => Err(QueryError::parsing(
                &self.path,
                format!("[{}] query requires a field", self.name),
            )),
            _ => Err(QueryError::parsing(
                &self.path,
                format!(
                    "[{}] query doesn't support multiple fields, found [{}] and [{}]",
                    self.name, rest[0].0, rest[1].0
                ),
            )),
        }
    }
}

/// Whether a range bound is Elasticsearch date math anchored at `now`.
fn is_date_math(s: &str) -> bool {
    s.strip_prefix("now").is_some_and(|rest| rest.is_empty() || rest.starts_with(['+', '-', '/']))
}

fn number_of(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse::<f64>().ok(),
        _ => None,
    }
    .filter(|f| f.is_finite())
}

fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

struct Parser<'l> {
    limits: &'l Limits,
    paths: Vec<String>,
    index: HashMap<String, usize>,
    runtime: Vec<RuntimeField>,
}

impl Parser<'_> {
    fn runtime_mappings(&mut self, v: &Value, path: &str) -> Result<(), QueryError> {
        let Value::Object(fields) = v else {
            return Err(QueryError::parsing(
                path,
                format!("[runtime_mappings] must be an object, found {}", kind_of(v)),
            ));
        };
        for (name, def) in fields {
            let fpath = join(path, name);
            let field = self.field(name, &fpath)?;
            let FieldRef::Path { slot, .. } = field else {
                return Err(QueryError::illegal(
                    &fpath,
                    format!("[{name}] is a virtual field: its type cannot be declared"),
                ));
            };
            let mut o = Obj::new("runtime_mappings", &fpath, def)?;
            if o.get("script").is_some() {
                return Err(QueryError::illegal(
                    &o.child("script"),
                    "[runtime_mappings] scripts are not supported: declare a type (and format)",
                ));
            }
            let kind = o.string("type")?;
            let kind = o.required("type", kind)?;
            let kind = RuntimeType::parse(kind).ok_or_else(|| {
                QueryError::illegal(
                    &o.child("type"),
                    format!("runtime field type [{kind}] is not supported: use date, keyword, long, double or boolean"),
                )
            })?;
            let format = o
                .string("format")?
                .map(|f| {
                    DateFormat::parse(f).map_err(|e| QueryError::illegal(&o.child("format"), e.0))
                })
                .transpose()?;
            if format.is_some() && kind != RuntimeType::Date {
                return Err(QueryError::illegal(
                    &o.child("format"),
                    format!(
                        "[format] is only for runtime fields of type date, not [{}]",
                        kind.as_str()
                    ),
                ));
            }
            o.finish()?;
            self.runtime.push(RuntimeField { name: name.clone(), slot, kind, format });
        }
        Ok(())
    }

    /// The format `runtime_mappings` gives a date field, for a clause that names none.
    fn runtime_format(&self, field: &FieldRef) -> Option<DateFormat> {
        self.runtime
            .iter()
            .find(|r| r.name == field.name() && r.kind == RuntimeType::Date)
            .and_then(|r| r.format.clone())
    }

    /// Whether `runtime_mappings` declares `field` a date.
    fn runtime_date(&self, field: &FieldRef) -> bool {
        self.runtime.iter().any(|r| r.name == field.name() && r.kind == RuntimeType::Date)
    }

    fn slot(&mut self, path: &str) -> usize {
        if let Some(&i) = self.index.get(path) {
            return i;
        }
        self.paths.push(path.to_string());
        self.index.insert(path.to_string(), self.paths.len() - 1);
        self.paths.len() - 1
    }

    fn field_name(&mut self, v: &Value, path: &str, owner: &str) -> Result<FieldRef, QueryError> {
        match v {
            Value::String(s) => self.field(s, path),
            _ => Err(QueryError::parsing(
                path,
                format!("[{owner}] [field] must be a string, found {}", kind_of(v)),
            )),
        }
    }

    fn field(&mut self, name: &str, path: &str) -> Result<FieldRef, QueryError> {
        let bad =
            name.is_empty() || name.starts_with('.') || name.ends_with('.') || name.contains("..");
        if bad {
            return Err(QueryError::illegal(path, format!("invalid field name [{name}]")));
        }
        Ok(match name {
            "@timestamp" => FieldRef::Timestamp,
            "@offset" => FieldRef::Offset,
            "@partition" => FieldRef::Partition,
            "@key" => FieldRef::Key,
            _ if name.contains('*') => {
                return Err(QueryError::illegal(
                    path,
                    format!("field patterns are not supported: [{name}]"),
                ));
            }
            _ => {
                let slot = self.slot(name);
                let fallback = name.strip_suffix(".keyword").map(|base| self.slot(base));
                FieldRef::Path { name: name.to_string(), slot, fallback }
            }
        })
    }

    fn size(&self, v: &Value, path: &str, max: usize) -> Result<usize, QueryError> {
        let n = match v {
            Value::Number(n) => n
                .as_u64()
                .or_else(|| n.as_f64().filter(|f| f.fract() == 0.0 && *f >= 0.0).map(|f| f as u64)),
            _ => None,
        }
        .ok_or_else(|| {
            QueryError::parsing(path, format!("[{path}] must be a non-negative integer, found {v}"))
        })?;
        if n > max as u64 {
            return Err(QueryError::illegal(
                path,
                format!("[{path}] must be less than or equal to {max}, found [{n}]"),
            ));
        }
        Ok(n as usize)
    }

    fn query(&mut self, v: &Value, path: &str) -> Result<Query, QueryError> {
        let Value::Object(map) = v else {
            return Err(QueryError::parsing(
                path,
                format!("query malformed, expected an object, found {}", kind_of(v)),
            ));
        };
        let mut entries = map.iter();
        let (kind, body) = match (entries.next(), entries.next()) {
            (Some(e), None) => e,
            (None, _) => {
                return Err(QueryError::parsing(path, "query malformed, empty clause found"));
            }
            (Some((a, _)), Some((b, _))) => {
                return Err(QueryError::parsing(
                    path,
                    format!(
                        "[{a}] malformed query, expected [END_OBJECT] but found [FIELD_NAME] [{b}]"
                    ),
                ));
            }
        };
        let path = join(path, kind);
        let path = path.as_str();
        match kind.as_str() {
            "match_all" | "match_none" => {
                let mut o = Obj::new(
                    if kind == "match_all" { "match_all" } else { "match_none" },
                    path,
                    body,
                )?;
                o.number("boost")?;
                o.finish()?;
                Ok(if kind == "match_all" { Query::MatchAll } else { Query::MatchNone })
            }
            "term" => {
                let mut o = Obj::new("term", path, body)?;
                let (name, inner) = o.single_field()?;
                let fpath = join(path, name);
                let field = self.field(name, &fpath)?;
                let (value, case_insensitive) = match inner {
                    Value::Object(_) => {
                        let mut io = Obj::new("term", &fpath, inner)?;
                        let value = io.get("value");
                        let value = io.required("value", value)?;
                        io.number("boost")?;
                        let ci = io.bool("case_insensitive")?.unwrap_or(false);
                        io.finish()?;
                        (value, ci)
                    }
                    other => (other, false),
                };
                let value = TermValue::from_json(value).ok_or_else(|| {
                    QueryError::parsing(
                        &fpath,
                        format!(
                            "[term] query value must be a string, number or boolean, found {}",
                            kind_of(value)
                        ),
                    )
                })?;
                o.finish()?;
                Ok(Query::Term { field, value, case_insensitive })
            }
            "terms" => {
                let mut o = Obj::new("terms", path, body)?;
                o.number("boost")?;
                let (name, inner) = o.single_field()?;
                let fpath = join(path, name);
                let field = self.field(name, &fpath)?;
                let Value::Array(items) = inner else {
                    return Err(QueryError::parsing(
                        &fpath,
                        format!(
                            "[terms] query requires an array of values for [{name}], found {}",
                            kind_of(inner)
                        ),
                    ));
                };
                if items.len() > 65_536 {
                    return Err(QueryError::illegal(
                        &fpath,
                        "[terms] query has more than 65536 values",
                    ));
                }
                let values = items
                    .iter()
                    .enumerate()
                    .map(|(i, v)| {
                        TermValue::from_json(v).ok_or_else(|| {
                            QueryError::parsing(
                                &format!("{fpath}.{i}"),
                                format!(
                                    "[terms] values must be strings, numbers or booleans, found {}",
                                    kind_of(v)
                                ),
                            )
                        })
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                o.finish()?;
                Ok(Query::Terms { field, values })
            }
            "range" => self.range_query(body, path),
            "exists" => {
                let mut o = Obj::new("exists", path, body)?;
                o.number("boost")?;
                let f = o.get("field");
                let f = o.required("field", f)?;
                let field = self.field_name(f, &o.child("field"), "exists")?;
                o.finish()?;
                Ok(Query::Exists { field })
            }
            "prefix" | "wildcard" => {
                let name_static = if kind == "prefix" { "prefix" } else { "wildcard" };
                let mut o = Obj::new(name_static, path, body)?;
                let (name, inner) = o.single_field()?;
                let fpath = join(path, name);
                let field = self.field(name, &fpath)?;
                let (value, ci) = match inner {
                    Value::String(s) => (s.clone(), false),
                    Value::Object(_) => {
                        let mut io = Obj::new(name_static, &fpath, inner)?;
                        let value = if kind == "wildcard" {
                            io.get_either("value", "wildcard")?.map(|(_, v)| v)
                        } else {
                            io.get("value")
                        };
                        let value = io.required("value", value)?;
                        let Value::String(s) = value else {
                            return Err(QueryError::parsing(
                                &fpath,
                                format!("[{kind}] value must be a string"),
                            ));
                        };
                        io.number("boost")?;
                        let ci = io.bool("case_insensitive")?.unwrap_or(false);
                        io.finish()?;
                        (s.clone(), ci)
                    }
                    other => {
                        return Err(QueryError::parsing(
                            &fpath,
                            format!("[{kind}] value must be a string, found {}", kind_of(other)),
                        ));
                    }
                };
                o.finish()?;
                if kind == "prefix" {
                    Ok(Query::Prefix { field, value, case_insensitive: ci })
                } else {
                    let matcher = crate::wildcard::Wildcard::new(&value, ci);
                    Ok(Query::Wildcard { field, pattern: value, case_insensitive: ci, matcher })
                }
            }
            "ids" => {
                let mut o = Obj::new("ids", path, body)?;
                o.number("boost")?;
                let values = o.get("values");
                let values = o.required("values", values)?;
                let Value::Array(items) = values else {
                    return Err(QueryError::parsing(
                        &o.child("values"),
                        "[ids] [values] must be an array of strings",
                    ));
                };
                let values = items
                    .iter()
                    .map(|v| match v {
                        Value::String(s) => Ok(s.clone()),
                        Value::Number(n) => Ok(n.to_string()),
                        _ => Err(QueryError::parsing(
                            &o.child("values"),
                            "[ids] [values] must be an array of strings",
                        )),
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                o.finish()?;
                Ok(Query::Ids { values })
            }
            "match" | "match_phrase" => {
                let phrase = kind == "match_phrase";
                let qname = if phrase { "match_phrase" } else { "match" };
                let mut o = Obj::new(qname, path, body)?;
                let (name, inner) = o.single_field()?;
                let fpath = join(path, name);
                let field = self.field(name, &fpath)?;
                let mut and = false;
                let mut msm = None;
                let query = match inner {
                    Value::Object(_) => {
                        let mut io = Obj::new(qname, &fpath, inner)?;
                        let q = io.get("query");
                        let q = io.required("query", q)?;
                        let q = query_text(q).ok_or_else(|| {
                            QueryError::parsing(
                                &io.child("query"),
                                format!("[{qname}] [query] must be a string, number or boolean"),
                            )
                        })?;
                        io.number("boost")?;
                        if phrase {
                            if let Some(slop) = io.number("slop")?
                                && slop != 0.0
                            {
                                return Err(QueryError::illegal(
                                    &io.child("slop"),
                                    "[match_phrase] only [slop] 0 is supported",
                                ));
                            }
                        } else {
                            and = operator(&mut io)?;
                            msm = minimum_should_match(&mut io)?;
                        }
                        io.finish()?;
                        q
                    }
                    other => query_text(other).ok_or_else(|| {
                        QueryError::parsing(
                            &fpath,
                            format!(
                                "[{qname}] query must be a string, number or boolean, found {}",
                                kind_of(other)
                            ),
                        )
                    })?,
                };
                o.finish()?;
                let tokens = text::analyze(&query);
                Ok(if phrase {
                    Query::MatchPhrase { field, query, tokens }
                } else {
                    Query::Match { field, query, tokens, and, minimum_should_match: msm }
                })
            }
            "multi_match" => {
                let mut o = Obj::new("multi_match", path, body)?;
                let q = o.get("query");
                let q = o.required("query", q)?;
                let query = query_text(q).ok_or_else(|| {
                    QueryError::parsing(&o.child("query"), "[multi_match] [query] must be a string")
                })?;
                let fields = o.get("fields");
                let fields = o.required("fields", fields)?;
                let Value::Array(items) = fields else {
                    return Err(QueryError::parsing(
                        &o.child("fields"),
                        "[multi_match] [fields] must be an array of field names",
                    ));
                };
                if items.is_empty() {
                    return Err(QueryError::illegal(
                        &o.child("fields"),
                        "[multi_match] [fields] must not be empty",
                    ));
                }
                let mut refs = Vec::new();
                for (i, f) in items.iter().enumerate() {
                    let fp = format!("{}.{i}", o.child("fields"));
                    let Value::String(s) = f else {
                        return Err(QueryError::parsing(
                            &fp,
                            "[multi_match] [fields] must be strings",
                        ));
                    };
                    // A `^boost` suffix changes scores only; scores are not computed.
                    let name = s.split_once('^').map_or(s.as_str(), |(n, _)| n);
                    refs.push(self.field(name, &fp)?);
                }
                if let Some(t) = o.string("type")?
                    && t != "best_fields"
                {
                    return Err(QueryError::illegal(
                        &o.child("type"),
                        format!("[multi_match] type [{t}] is not supported, only [best_fields]"),
                    ));
                }
                o.number("boost")?;
                o.number("tie_breaker")?;
                let and = operator(&mut o)?;
                let msm = minimum_should_match(&mut o)?;
                o.finish()?;
                let tokens = text::analyze(&query);
                Ok(Query::MultiMatch {
                    fields: refs,
                    query,
                    tokens,
                    and,
                    minimum_should_match: msm,
                })
            }
            "bool" => {
                let mut o = Obj::new("bool", path, body)?;
                let clauses = |o: &mut Obj<'_>,
                               key: &str,
                               p: &mut Self|
                 -> Result<Vec<Query>, QueryError> {
                    let cp = o.child(key);
                    match o.get(key) {
                        None => Ok(Vec::new()),
                        Some(Value::Array(items)) => items
                            .iter()
                            .enumerate()
                            .map(|(i, q)| p.query(q, &format!("{cp}.{i}")))
                            .collect(),
                        Some(q @ Value::Object(_)) => Ok(vec![p.query(q, &cp)?]),
                        Some(other) => Err(QueryError::parsing(
                            &cp,
                            format!(
                                "[bool] [{key}] must be a query or an array of queries, found {}",
                                kind_of(other)
                            ),
                        )),
                    }
                };
                let must = clauses(&mut o, "must", self)?;
                let filter = clauses(&mut o, "filter", self)?;
                let should = clauses(&mut o, "should", self)?;
                let must_not = clauses(&mut o, "must_not", self)?;
                o.number("boost")?;
                let msm = minimum_should_match(&mut o)?;
                o.finish()?;
                Ok(Query::Bool { must, filter, should, must_not, minimum_should_match: msm })
            }
            other => Err(QueryError::parsing(path, format!("unknown query [{other}]"))),
        }
    }

    fn range_query(&mut self, body: &Value, path: &str) -> Result<Query, QueryError> {
        let mut o = Obj::new("range", path, body)?;
        let (name, inner) = o.single_field()?;
        let fpath = join(path, name);
        let field = self.field(name, &fpath)?;
        let mut io = Obj::new("range", &fpath, inner)?;
        let raw: Vec<(&str, Option<&Value>)> =
            ["gt", "gte", "lt", "lte"].into_iter().map(|k| (k, io.get(k))).collect();
        let format = io
            .string("format")?
            .map(|f| {
                DateFormat::parse(f).map_err(|e| QueryError::illegal(&io.child("format"), e.0))
            })
            .transpose()?
            .or_else(|| self.runtime_format(&field));
        let runtime_date = self.runtime_date(&field);
        let tz = io
            .string("time_zone")?
            .map(|z| {
                TimeZone::parse(z).map_err(|e| QueryError::illegal(&io.child("time_zone"), e.0))
            })
            .transpose()?;
        io.number("boost")?;
        if let Some(r) = io.string("relation")?
            && !r.eq_ignore_ascii_case("intersects")
        {
            return Err(QueryError::illegal(
                &io.child("relation"),
                format!("[range] relation [{r}] is not supported"),
            ));
        }
        io.finish()?;
        o.finish()?;
        for (k, v) in &raw {
            if let Some(v) = v
                && !matches!(v, Value::String(_) | Value::Number(_))
            {
                return Err(QueryError::parsing(
                    &join(&fpath, k),
                    format!("[range] [{k}] must be a number or a string, found {}", kind_of(v)),
                ));
            }
        }
        let strings: Vec<&str> =
            raw.iter().filter_map(|(_, v)| v.and_then(Value::as_str)).collect();
        // Date math (`now`, `now-1d`, `now/d`) marks a date range too, so that it is rejected
        // below instead of silently becoming a keyword range over the text "now-1d".
        let date_like = |s: &str| {
            is_date_math(s)
                || DateFormat::default_format().parse_millis(s, &TimeZone::utc()).is_some()
        };
        let kind = if format.is_some()
            || runtime_date
            || tz.is_some()
            || (!strings.is_empty()
                && strings.iter().all(|s| s.parse::<f64>().is_err() && date_like(s)))
        {
            RangeKind::Date {
                format: format.unwrap_or_else(DateFormat::default_format),
                time_zone: tz.unwrap_or_else(TimeZone::utc),
            }
        } else if strings.iter().any(|s| s.parse::<f64>().is_err()) {
            RangeKind::Keyword
        } else {
            RangeKind::Numeric
        };
        let mut bounds = Vec::new();
        for (k, v) in raw {
            let bound = match (v, &kind) {
                (None, _) => None,
                (Some(v), RangeKind::Date { format, time_zone }) => {
                    let ms = match v {
                        Value::Number(n) => n.as_f64().and_then(|f| format.number_to_millis(f)),
                        Value::String(s) if s.starts_with("now") => {
                            return Err(QueryError::illegal(
                                &join(&fpath, k),
                                "date math [now] is not supported: a live query's answer may depend only on the log",
                            ));
                        }
                        // Date math rounding: `gt` and `lte` fill what a partial date leaves
                        // out upwards, so they exclude or include the whole period it names.
                        Value::String(s) if matches!(k, "gt" | "lte") => {
                            format.parse_millis_round_up(s, time_zone)
                        }
                        Value::String(s) => format.parse_millis(s, time_zone),
                        _ => None,
                    };
                    let ms = ms.ok_or_else(|| {
                        QueryError::parsing(
                            &join(&fpath, k),
                            format!(
                                "failed to parse date field [{v}] with format [{}]",
                                format.spec()
                            ),
                        )
                    })?;
                    Some(Bound::Num(ms as f64))
                }
                (Some(Value::String(s)), RangeKind::Keyword) => Some(Bound::Str(s.clone())),
                (Some(v), _) => Some(Bound::Num(number_of(v).ok_or_else(|| {
                    QueryError::parsing(
                        &join(&fpath, k),
                        format!("[range] [{k}] must be a number, found {v}"),
                    )
                })?)),
            };
            bounds.push(bound);
        }
        let mut it = bounds.into_iter();
        let (gt, gte, lt, lte) =
            (it.next().flatten(), it.next().flatten(), it.next().flatten(), it.next().flatten());
        Ok(Query::Range { field, kind, gt, gte, lt, lte })
    }

    fn sort(&mut self, v: &Value, path: &str) -> Result<Vec<SortSpec>, QueryError> {
        let items: Vec<&Value> = match v {
            Value::Array(a) => a.iter().collect(),
            other => vec![other],
        };
        let mut out = Vec::new();
        for (i, item) in items.into_iter().enumerate() {
            let ip =
                if matches!(v, Value::Array(_)) { format!("{path}.{i}") } else { path.to_string() };
            let (name, spec) = match item {
                Value::String(s) => (s.as_str(), None),
                Value::Object(m) if m.len() == 1 => {
                    let (k, s) = m.iter().next().expect("one entry");
                    (k.as_str(), Some(s))
                }
                _ => {
                    return Err(QueryError::parsing(
                        &ip,
                        "[sort] entries must be a field name or {field: order}",
                    ));
                }
            };
            let fp = join(&ip, name);
            let mut order = Order::Asc;
            let mut missing_first = false;
            let mut mode_max = None;
            match spec {
                None => {}
                Some(Value::String(o)) => order = parse_order(o, &fp)?,
                Some(obj @ Value::Object(_)) => {
                    let mut o = Obj::new("sort", &fp, obj)?;
                    if let Some(s) = o.string("order")? {
                        order = parse_order(s, &o.child("order"))?;
                    }
                    match o.string("missing")? {
                        None | Some("_last") => {}
                        Some("_first") => missing_first = true,
                        Some(m) => {
                            return Err(QueryError::illegal(
                                &o.child("missing"),
                                format!(
                                    "[sort] missing [{m}] is not supported: use _first or _last"
                                ),
                            ));
                        }
                    }
                    match o.string("mode")? {
                        None => {}
                        Some("min") => mode_max = Some(false),
                        Some("max") => mode_max = Some(true),
                        Some(m) => {
                            return Err(QueryError::illegal(
                                &o.child("mode"),
                                format!("[sort] mode [{m}] is not supported: use min or max"),
                            ));
                        }
                    }
                    o.get("unmapped_type");
                    o.finish()?;
                }
                Some(other) => {
                    return Err(QueryError::parsing(
                        &fp,
                        format!(
                            "[sort] order must be a string or an object, found {}",
                            kind_of(other)
                        ),
                    ));
                }
            }
            if name == "_score" {
                return Err(QueryError::illegal(
                    &fp,
                    "scores are not computed: sort by a field or _doc",
                ));
            }
            let field = if name == "_doc" { None } else { Some(self.field(name, &fp)?) };
            out.push(SortSpec {
                field,
                order,
                missing_first,
                mode_max: mode_max.unwrap_or(order == Order::Desc),
            });
        }
        Ok(out)
    }

    fn aggs(&mut self, v: &Value, path: &str, top: bool) -> Result<Vec<Agg>, QueryError> {
        let Value::Object(map) = v else {
            return Err(QueryError::parsing(
                path,
                format!("[{path}] must be an object of named aggregations, found {}", kind_of(v)),
            ));
        };
        let mut out: Vec<Agg> = Vec::new();
        for (name, body) in map {
            let ap = join(path, name);
            if name.is_empty() || name.contains(['[', ']', '>']) {
                return Err(QueryError::parsing(&ap, format!("invalid aggregation name [{name}]")));
            }
            out.push(self.agg(name, body, &ap, top)?);
        }
        sort::stable_by(&mut out, |a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    fn agg(&mut self, name: &str, body: &Value, path: &str, top: bool) -> Result<Agg, QueryError> {
        let Value::Object(map) = body else {
            return Err(QueryError::parsing(
                path,
                format!("aggregation [{name}] must be an object, found {}", kind_of(body)),
            ));
        };
        let mut kind_entry = None;
        let mut subs_entry = None;
        for (k, v) in map {
            match k.as_str() {
                "aggs" | "aggregations" => {
                    if subs_entry.is_some() {
                        return Err(QueryError::parsing(
                            path,
                            format!("found two sub aggregation definitions under [{name}]"),
                        ));
                    }
                    subs_entry = Some((k.as_str(), v));
                }
                _ => {
                    if let Some((prev, _)) = kind_entry {
                        return Err(QueryError::parsing(
                            path,
                            format!(
                                "found two aggregation type definitions in [{name}]: [{prev}] and [{k}]"
                            ),
                        ));
                    }
                    kind_entry = Some((k.as_str(), v));
                }
            }
        }
        let (type_name, params) = kind_entry.ok_or_else(|| {
            QueryError::parsing(path, format!("missing definition for aggregation [{name}]"))
        })?;
        let kp = join(path, type_name);
        let kind = self.agg_kind(type_name, params, &kp, top)?;
        let subs = match subs_entry {
            Some((key, v)) => {
                if kind.is_metric() {
                    return Err(QueryError::parsing(
                        &join(path, key),
                        format!(
                            "Aggregator [{name}] of type [{}] cannot accept sub-aggregations",
                            kind.type_name()
                        ),
                    ));
                }
                self.aggs(v, &join(path, key), false)?
            }
            None => Vec::new(),
        };
        let mut agg = Agg { name: name.to_string(), kind, subs };
        resolve_terms_order(&mut agg, &kp)?;
        Ok(agg)
    }

    fn agg_kind(
        &mut self,
        type_name: &str,
        params: &Value,
        path: &str,
        top: bool,
    ) -> Result<AggKind, QueryError> {
        let name: &'static str = match type_name {
            "value_count" => "value_count",
            "sum" => "sum",
            "min" => "min",
            "max" => "max",
            "avg" => "avg",
            "stats" => "stats",
            "extended_stats" => "extended_stats",
            "cardinality" => "cardinality",
            "percentiles" => "percentiles",
            "top_hits" => "top_hits",
            "terms" => "terms",
            "histogram" => "histogram",
            "date_histogram" => "date_histogram",
            "range" => "range",
            "date_range" => "date_range",
            "filter" => "filter",
            "filters" => "filters",
            "missing" => "missing",
            "global" => "global",
            other => {
                return Err(QueryError::parsing(
                    path,
                    format!("Unknown aggregation type [{other}]"),
                ));
            }
        };
        if name == "filter" {
            return Ok(AggKind::Filter { query: self.query(params, path)? });
        }
        let mut o = Obj::new(name, path, params)?;
        let field = |o: &mut Obj<'_>, p: &mut Self| -> Result<FieldRef, QueryError> {
            let f = o.get("field");
            if o.get("script").is_some() {
                return Err(QueryError::parsing(
                    &o.child("script"),
                    format!("[{}] scripts are not supported", o.name),
                ));
            }
            let f = o.required("field", f)?;
            p.field_name(f, &o.child("field"), o.name)
        };
        let kind = match name {
            "value_count" => AggKind::ValueCount { field: field(&mut o, self)? },
            "sum" => AggKind::Sum { field: field(&mut o, self)? },
            "min" => AggKind::Min { field: field(&mut o, self)? },
            "max" => AggKind::Max { field: field(&mut o, self)? },
            "avg" => AggKind::Avg { field: field(&mut o, self)? },
            "stats" => AggKind::Stats { field: field(&mut o, self)? },
            "extended_stats" => {
                let field = field(&mut o, self)?;
                let sigma = o.number("sigma")?.unwrap_or(2.0);
                if sigma < 0.0 {
                    return Err(QueryError::illegal(
                        &o.child("sigma"),
                        "[sigma] must be greater than or equal to 0",
                    ));
                }
                AggKind::ExtendedStats { field, sigma }
            }
            "cardinality" => {
                let field = field(&mut o, self)?;
                let t = o.number("precision_threshold")?.unwrap_or(3000.0);
                if !(0.0..=1e12).contains(&t) || t.fract() != 0.0 {
                    return Err(QueryError::illegal(
                        &o.child("precision_threshold"),
                        "[precision_threshold] must be a non-negative integer",
                    ));
                }
                // Elasticsearch caps the threshold at 40000.
                AggKind::Cardinality { field, precision_threshold: (t as u32).min(40_000) }
            }
            "percentiles" => {
                let field = field(&mut o, self)?;
                let percents = match o.get("percents") {
                    None => vec![1.0, 5.0, 25.0, 50.0, 75.0, 95.0, 99.0],
                    Some(Value::Array(a)) if !a.is_empty() && a.len() <= 1000 => a
                        .iter()
                        .map(|p| number_of(p).filter(|p| (0.0..=100.0).contains(p)))
                        .collect::<Option<Vec<f64>>>()
                        .ok_or_else(|| {
                            QueryError::illegal(
                                &o.child("percents"),
                                "[percents] must be numbers between 0 and 100",
                            )
                        })?,
                    Some(_) => {
                        return Err(QueryError::illegal(
                            &o.child("percents"),
                            "[percents] must be a non-empty array of numbers",
                        ));
                    }
                };
                let keyed = o.bool("keyed")?.unwrap_or(true);
                let mut compression = 100.0;
                if let Some(td) = o.get("tdigest") {
                    let mut t = Obj::new("tdigest", &o.child("tdigest"), td)?;
                    if let Some(c) = t.number("compression")? {
                        if !(20.0..=1000.0).contains(&c) {
                            return Err(QueryError::illegal(
                                &t.child("compression"),
                                "[compression] must be between 20 and 1000",
                            ));
                        }
                        compression = c;
                    }
                    t.finish()?;
                }
                let mut percents = percents;
                sort::stable_by(&mut percents, f64::total_cmp);
                percents.dedup();
                AggKind::Percentiles { field, percents, keyed, compression }
            }
            "top_hits" => {
                let size = match o.get("size") {
                    Some(v) => self.size(v, &o.child("size"), self.limits.max_size.min(100))?,
                    None => 3,
                };
                let sort = match o.get("sort") {
                    Some(v) => self.sort(v, &o.child("sort"))?,
                    None => Vec::new(),
                };
                let source = match o.get("_source") {
                    Some(v) => source_filter(v, &o.child("_source"))?,
                    None => SourceFilter::default(),
                };
                if let Some(v) = o.get("from")
                    && v.as_u64() != Some(0)
                {
                    return Err(QueryError::illegal(
                        &o.child("from"),
                        "[top_hits] [from] other than 0 is not supported",
                    ));
                }
                AggKind::TopHits { size, sort, source }
            }
            "terms" => {
                let field = field(&mut o, self)?;
                let size = match o.get("size") {
                    Some(v) => self.size(v, &o.child("size"), self.limits.max_terms_size)?,
                    None => 10,
                };
                if size == 0 {
                    return Err(QueryError::illegal(
                        &o.child("size"),
                        "[size] must be greater than 0",
                    ));
                }
                o.get("shard_size");
                let min_doc_count = self.min_doc_count(&mut o, 1)?;
                let order = terms_order(o.get("order"), &o.child("order"))?;
                let missing = match o.get("missing") {
                    Some(v) => Some(TermValue::from_json(v).ok_or_else(|| {
                        QueryError::parsing(
                            &o.child("missing"),
                            "[terms] [missing] must be a string, number or boolean",
                        )
                    })?),
                    None => None,
                };
                let include = o
                    .get("include")
                    .map(|v| terms_filter(v, &o.child("include"), self.limits.max_regex_length))
                    .transpose()?;
                let exclude = o
                    .get("exclude")
                    .map(|v| terms_filter(v, &o.child("exclude"), self.limits.max_regex_length))
                    .transpose()?;
                AggKind::Terms { field, size, min_doc_count, order, missing, include, exclude }
            }
            "histogram" => {
                let field = field(&mut o, self)?;
                let interval = o.number("interval")?;
                let interval = o.required("interval", interval)?;
                if interval <= 0.0 {
                    return Err(QueryError::illegal(
                        &o.child("interval"),
                        format!("[interval] must be >0 for histogram aggregation [{interval}]"),
                    ));
                }
                let offset = o.number("offset")?.unwrap_or(0.0);
                let min_doc_count = self.min_doc_count(&mut o, 0)?;
                let extended_bounds = o
                    .get("extended_bounds")
                    .map(|v| num_bounds(v, &o.child("extended_bounds")))
                    .transpose()?;
                let hard_bounds = o
                    .get("hard_bounds")
                    .map(|v| num_bounds(v, &o.child("hard_bounds")))
                    .transpose()?;
                let keyed = o.bool("keyed")?.unwrap_or(false);
                AggKind::Histogram {
                    field,
                    interval,
                    offset,
                    min_doc_count,
                    extended_bounds,
                    hard_bounds,
                    keyed,
                }
            }
            "date_histogram" => {
                let field = field(&mut o, self)?;
                if o.get("interval").is_some() {
                    return Err(QueryError::illegal(
                        &o.child("interval"),
                        "[interval] is deprecated and not supported: use [calendar_interval] or [fixed_interval]",
                    ));
                }
                let cal = o.string("calendar_interval")?;
                let fixed = o.string("fixed_interval")?;
                let interval = match (cal, fixed) {
                    (Some(c), None) => DateInterval::Calendar(
                        CalendarUnit::parse(c)
                            .map_err(|e| QueryError::illegal(&o.child("calendar_interval"), e.0))?,
                    ),
                    (None, Some(f)) => DateInterval::Fixed(
                        date::parse_fixed_interval(f)
                            .map_err(|e| QueryError::illegal(&o.child("fixed_interval"), e.0))?,
                    ),
                    (Some(_), Some(_)) => {
                        return Err(QueryError::illegal(
                            path,
                            "[date_histogram] cannot use both [calendar_interval] and [fixed_interval]",
                        ));
                    }
                    (None, None) => {
                        return Err(QueryError::illegal(
                            path,
                            "[date_histogram] requires [calendar_interval] or [fixed_interval]",
                        ));
                    }
                };
                let time_zone = match o.string("time_zone")? {
                    Some(z) => TimeZone::parse(z)
                        .map_err(|e| QueryError::illegal(&o.child("time_zone"), e.0))?,
                    None => TimeZone::utc(),
                };
                let format = o
                    .string("format")?
                    .map(|f| {
                        DateFormat::parse(f)
                            .map_err(|e| QueryError::illegal(&o.child("format"), e.0))
                    })
                    .transpose()?
                    .or_else(|| self.runtime_format(&field));
                let offset = match o.get("offset") {
                    None => 0,
                    Some(Value::String(s)) => date::parse_offset(s)
                        .map_err(|e| QueryError::illegal(&o.child("offset"), e.0))?,
                    Some(Value::Number(n)) => n.as_i64().ok_or_else(|| {
                        QueryError::illegal(
                            &o.child("offset"),
                            "[offset] must be an integer of ms or a time value",
                        )
                    })?,
                    Some(_) => {
                        return Err(QueryError::parsing(
                            &o.child("offset"),
                            "[offset] must be a string or a number",
                        ));
                    }
                };
                let min_doc_count = self.min_doc_count(&mut o, 0)?;
                let fmt = format.clone().unwrap_or_else(DateFormat::default_format);
                let extended_bounds = o
                    .get("extended_bounds")
                    .map(|v| date_bounds(v, &o.child("extended_bounds"), &fmt, &time_zone))
                    .transpose()?;
                let keyed = o.bool("keyed")?.unwrap_or(false);
                AggKind::DateHistogram {
                    field,
                    interval,
                    offset,
                    time_zone,
                    format,
                    min_doc_count,
                    extended_bounds,
                    keyed,
                }
            }
            "range" | "date_range" => {
                let field = field(&mut o, self)?;
                let keyed = o.bool("keyed")?.unwrap_or(false);
                let is_date = name == "date_range";
                let (format, time_zone) = if is_date {
                    let f = o
                        .string("format")?
                        .map(|f| {
                            DateFormat::parse(f)
                                .map_err(|e| QueryError::illegal(&o.child("format"), e.0))
                        })
                        .transpose()?;
                    let z = o
                        .string("time_zone")?
                        .map(|z| {
                            TimeZone::parse(z)
                                .map_err(|e| QueryError::illegal(&o.child("time_zone"), e.0))
                        })
                        .transpose()?;
                    (f, z.unwrap_or_else(TimeZone::utc))
                } else {
                    (None, TimeZone::utc())
                };
                let rp = o.child("ranges");
                let ranges = o.get("ranges");
                let ranges = o.required("ranges", ranges)?;
                let Value::Array(items) = ranges else {
                    return Err(QueryError::parsing(
                        &rp,
                        format!("[{name}] [ranges] must be an array"),
                    ));
                };
                if items.is_empty() {
                    return Err(QueryError::illegal(
                        &rp,
                        "No [ranges] specified for the [range] aggregation",
                    ));
                }
                let fmt = format.clone().unwrap_or_else(DateFormat::default_format);
                let mut specs = Vec::new();
                for (i, r) in items.iter().enumerate() {
                    let ip = format!("{rp}.{i}");
                    let mut ro = Obj::new("range", &ip, r)?;
                    let bound = |v: Option<&Value>, k: &str| -> Result<Option<f64>, QueryError> {
                        match v {
                            None | Some(Value::Null) => Ok(None),
                            Some(v) if is_date => date_value(v, &fmt, &time_zone)
                                .map(|ms| Some(ms as f64))
                                .ok_or_else(|| {
                                    QueryError::parsing(
                                        &join(&ip, k),
                                        format!(
                                            "failed to parse date [{v}] with format [{}]",
                                            fmt.spec()
                                        ),
                                    )
                                }),
                            Some(v) => number_of(v).map(Some).ok_or_else(|| {
                                QueryError::parsing(
                                    &join(&ip, k),
                                    format!("[range] [{k}] must be a number, found {v}"),
                                )
                            }),
                        }
                    };
                    let from = bound(ro.get("from"), "from")?;
                    let to = bound(ro.get("to"), "to")?;
                    let key = ro.string("key")?.map(str::to_string);
                    ro.finish()?;
                    specs.push(RangeSpec { from, to, key });
                }
                // Elasticsearch orders range buckets by (from, to), unbounded ends first/last.
                sort::stable_by(&mut specs, |a, b| {
                    let f = |x: Option<f64>, d: f64| x.unwrap_or(d);
                    f(a.from, f64::NEG_INFINITY)
                        .total_cmp(&f(b.from, f64::NEG_INFINITY))
                        .then(f(a.to, f64::INFINITY).total_cmp(&f(b.to, f64::INFINITY)))
                });
                if is_date {
                    AggKind::DateRange { field, ranges: specs, keyed, format, time_zone }
                } else {
                    AggKind::Range { field, ranges: specs, keyed }
                }
            }
            "filters" => {
                let fp = o.child("filters");
                let filters = o.get("filters");
                let filters = o.required("filters", filters)?;
                let (filters, keyed) = match filters {
                    Value::Object(m) => {
                        let mut v = m
                            .iter()
                            .map(|(k, q)| Ok((Some(k.clone()), self.query(q, &join(&fp, k))?)))
                            .collect::<Result<Vec<_>, QueryError>>()?;
                        sort::stable_by(&mut v, |a, b| a.0.cmp(&b.0));
                        (v, true)
                    }
                    Value::Array(a) => (
                        a.iter()
                            .enumerate()
                            .map(|(i, q)| Ok((None, self.query(q, &format!("{fp}.{i}"))?)))
                            .collect::<Result<Vec<_>, QueryError>>()?,
                        false,
                    ),
                    other => {
                        return Err(QueryError::parsing(
                            &fp,
                            format!(
                                "[filters] must be an object or an array of queries, found {}",
                                kind_of(other)
                            ),
                        ));
                    }
                };
                let other_bucket = o.bool("other_bucket")?;
                let other_key = o.string("other_bucket_key")?;
                let other_bucket_key = match (other_bucket, other_key) {
                    (Some(false), _) => None,
                    (_, Some(k)) => Some(k.to_string()),
                    (Some(true), None) => Some("_other_".to_string()),
                    (None, None) => None,
                };
                let keyed = o.bool("keyed")?.unwrap_or(keyed) && keyed;
                AggKind::Filters { filters, keyed, other_bucket_key }
            }
            "missing" => AggKind::Missing { field: field(&mut o, self)? },
            "global" => {
                if !top {
                    return Err(QueryError::parsing(
                        path,
                        "[global] aggregation can only be a top level aggregation",
                    ));
                }
                AggKind::Global
            }
            _ => unreachable!("every name above is handled"),
        };
        o.finish()?;
        Ok(kind)
    }

    fn min_doc_count(&self, o: &mut Obj<'_>, default: u64) -> Result<u64, QueryError> {
        match o.number("min_doc_count")? {
            None => Ok(default),
            Some(n) if n >= 0.0 && n.fract() == 0.0 => Ok(n as u64),
            Some(n) => Err(QueryError::illegal(
                &o.child("min_doc_count"),
                format!("[min_doc_count] must be greater than or equal to 0, found [{n}]"),
            )),
        }
    }
}

fn parse_order(s: &str, path: &str) -> Result<Order, QueryError> {
    match s.to_ascii_lowercase().as_str() {
        "asc" => Ok(Order::Asc),
        "desc" => Ok(Order::Desc),
        _ => Err(QueryError::illegal(path, format!("unknown order [{s}]: use asc or desc"))),
    }
}

fn query_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn operator(o: &mut Obj<'_>) -> Result<bool, QueryError> {
    match o.string("operator")? {
        None => Ok(false),
        Some(s) if s.eq_ignore_ascii_case("or") => Ok(false),
        Some(s) if s.eq_ignore_ascii_case("and") => Ok(true),
        Some(s) => Err(QueryError::illegal(
            &o.child("operator"),
            format!("[{}] unknown operator [{s}]: use or or and", o.name),
        )),
    }
}

fn minimum_should_match(o: &mut Obj<'_>) -> Result<Option<MinimumShouldMatch>, QueryError> {
    let path = o.child("minimum_should_match");
    match o.get("minimum_should_match") {
        None => Ok(None),
        Some(Value::Number(n)) => {
            n.as_i64().map(|c| Some(MinimumShouldMatch::Count(c))).ok_or_else(|| {
                QueryError::illegal(
                    &path,
                    "[minimum_should_match] must be an integer or a percentage",
                )
            })
        }
        Some(Value::String(s)) => {
            let s = s.trim();
            let parsed = match s.strip_suffix('%') {
                Some(p) => p
                    .trim()
                    .parse::<i64>()
                    .ok()
                    .filter(|p| p.abs() <= 100)
                    .map(MinimumShouldMatch::Percent),
                None => s.parse::<i64>().ok().map(MinimumShouldMatch::Count),
            };
            parsed.map(Some).ok_or_else(|| QueryError::illegal(&path, format!("[minimum_should_match] [{s}] is not supported: use an integer or a percentage")))
        }
        Some(v) => Err(QueryError::parsing(
            &path,
            format!(
                "[minimum_should_match] must be an integer or a percentage, found {}",
                kind_of(v)
            ),
        )),
    }
}

/// A terms `include`/`exclude` pattern compiled within [`crate::limits::MAX_COMPILED_REGEX_BYTES`].
fn bounded_regex(re: &str) -> Result<Regex, regex_lite::Error> {
    regex_lite::RegexBuilder::new(re).size_limit(crate::limits::MAX_COMPILED_REGEX_BYTES).build()
}

fn source_filter(v: &Value, path: &str) -> Result<SourceFilter, QueryError> {
    let list = |v: &Value, p: &str| -> Result<Vec<String>, QueryError> {
        match v {
            Value::String(s) => Ok(vec![s.clone()]),
            Value::Array(a) => a
                .iter()
                .map(|x| {
                    x.as_str()
                        .map(str::to_string)
                        .ok_or_else(|| QueryError::parsing(p, "[_source] patterns must be strings"))
                })
                .collect(),
            _ => Err(QueryError::parsing(
                p,
                "[_source] must be a boolean, a pattern, an array of patterns or {includes, excludes}",
            )),
        }
    };
    match v {
        Value::Bool(b) => Ok(SourceFilter { disabled: !b, ..SourceFilter::default() }),
        Value::Object(_) => {
            let mut o = Obj::new("_source", path, v)?;
            let includes = o
                .get_either("includes", "include")?
                .map(|(k, v)| list(v, &o.child(k)))
                .transpose()?
                .unwrap_or_default();
            let excludes = o
                .get_either("excludes", "exclude")?
                .map(|(k, v)| list(v, &o.child(k)))
                .transpose()?
                .unwrap_or_default();
            o.finish()?;
            Ok(SourceFilter { disabled: false, includes, excludes })
        }
        other => {
            Ok(SourceFilter { disabled: false, includes: list(other, path)?, excludes: Vec::new() })
        }
    }
}

fn terms_order(v: Option<&Value>, path: &str) -> Result<Vec<(TermsOrderKey, Order)>, QueryError> {
    let items: Vec<&Value> = match v {
        None => {
            return Ok(vec![(TermsOrderKey::Count, Order::Desc), (TermsOrderKey::Key, Order::Asc)]);
        }
        Some(Value::Array(a)) => a.iter().collect(),
        Some(o) => vec![o],
    };
    let mut out = Vec::new();
    for item in items {
        let Value::Object(m) = item else {
            return Err(QueryError::parsing(
                path,
                "[order] must be an object {key: asc|desc} or an array of them",
            ));
        };
        if m.len() != 1 {
            return Err(QueryError::parsing(path, "[order] entries must have exactly one key"));
        }
        let (k, dir) = m.iter().next().expect("one entry");
        let dir = parse_order(dir.as_str().unwrap_or(""), &join(path, k))?;
        let key = match k.as_str() {
            "_count" => TermsOrderKey::Count,
            "_key" => TermsOrderKey::Key,
            "_term" => {
                return Err(QueryError::illegal(
                    &join(path, k),
                    "[_term] is deprecated: order by [_key]",
                ));
            }
            other => {
                TermsOrderKey::Metric { path: other.to_string(), index: usize::MAX, metric: None }
            }
        };
        out.push((key, dir));
    }
    // Ties are broken by key ascending, as Elasticsearch does.
    if !out.iter().any(|(k, _)| *k == TermsOrderKey::Key) {
        out.push((TermsOrderKey::Key, Order::Asc));
    }
    Ok(out)
}

/// Point `terms` orders by sub-aggregation at the sub-aggregation's index; reject bad paths.
fn resolve_terms_order(agg: &mut Agg, path: &str) -> Result<(), QueryError> {
    let subs = &agg.subs;
    let AggKind::Terms { order, .. } = &mut agg.kind else { return Ok(()) };
    for (key, _) in order.iter_mut() {
        let TermsOrderKey::Metric { path: p, index, metric } = key else { continue };
        let (name, m) = match p.split_once('.') {
            Some((n, m)) => (n, Some(m)),
            None => (p.as_str(), None),
        };
        let Some(i) = subs.iter().position(|s| s.name == name) else {
            return Err(QueryError::illegal(
                &join(path, "order"),
                format!("Invalid aggregator order path [{p}]: unknown aggregation [{name}]"),
            ));
        };
        let ok = subs[i].kind.orders_terms(m);
        if !ok {
            return Err(QueryError::illegal(
                &join(path, "order"),
                format!(
                    "Invalid aggregator order path [{p}]: order by a single-value metric, or [stats_agg.metric]"
                ),
            ));
        }
        *index = i;
        *metric = m.map(str::to_string);
    }
    Ok(())
}

fn terms_filter(v: &Value, path: &str, max_regex_length: usize) -> Result<TermsFilter, QueryError> {
    match v {
        Value::String(s) => {
            let length = s.chars().count();
            if length > max_regex_length {
                return Err(QueryError::illegal(
                    path,
                    format!(
                        "the length of regex [{length}] exceeds the allowed maximum of [{max_regex_length}]"
                    ),
                ));
            }
            let re = bounded_regex(&format!("^(?:{s})$")).map_err(|e| {
                QueryError::illegal(path, format!("invalid regular expression [{s}]: {e}"))
            })?;
            Ok(TermsFilter::Regex(s.clone(), re))
        }
        Value::Array(a) => a
            .iter()
            .map(|x| {
                TermValue::from_json(x).ok_or_else(|| {
                    QueryError::parsing(
                        path,
                        "[include]/[exclude] values must be strings, numbers or booleans",
                    )
                })
            })
            .collect::<Result<Vec<_>, _>>()
            .map(TermsFilter::Values),
        _ => Err(QueryError::parsing(
            path,
            "[include]/[exclude] must be a regular expression or an array of values (partitions are not supported)",
        )),
    }
}

fn num_bounds(v: &Value, path: &str) -> Result<Bounds, QueryError> {
    let mut o = Obj::new("bounds", path, v)?;
    let min = o.number("min")?;
    let max = o.number("max")?;
    o.finish()?;
    if let (Some(a), Some(b)) = (min, max)
        && a > b
    {
        return Err(QueryError::illegal(
            path,
            format!("[min] {a} must not be greater than [max] {b}"),
        ));
    }
    Ok(Bounds { min, max })
}

fn date_value(v: &Value, format: &DateFormat, tz: &TimeZone) -> Option<i64> {
    match v {
        Value::Number(n) => n.as_f64().and_then(|f| format.number_to_millis(f)),
        Value::String(s) => format.parse_millis(s, tz).or_else(|| s.parse::<i64>().ok()),
        _ => None,
    }
}

fn date_bounds(
    v: &Value,
    path: &str,
    format: &DateFormat,
    tz: &TimeZone,
) -> Result<Bounds, QueryError> {
    let mut o = Obj::new("extended_bounds", path, v)?;
    let mut get = |k: &str| -> Result<Option<f64>, QueryError> {
        match o.get(k) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => date_value(v, format, tz).map(|ms| Some(ms as f64)).ok_or_else(|| {
                QueryError::parsing(
                    &join(path, k),
                    format!("failed to parse date [{v}] with format [{}]", format.spec()),
                )
            }),
        }
    };
    let min = get("min")?;
    let max = get("max")?;
    o.finish()?;
    if let (Some(a), Some(b)) = (min, max)
        && a > b
    {
        return Err(QueryError::illegal(path, "[extended_bounds] [min] must not be after [max]"));
    }
    Ok(Bounds { min, max })
}
