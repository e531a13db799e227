//! The config file's shape as serde structs (step one of two): every key, nothing checked yet.
//!
//! Leaves are [`Scalar`]s — the text as written — so that a wrong value is a finding of the
//! conversion step (with its position), never a serde error that would hide the rest. The
//! structs deny unknown fields, and [`field_names`] reads their key lists back from serde so the
//! position-aware walk in `schema` checks keys against exactly these definitions.

use std::fmt;
use std::marker::PhantomData;

use serde::de::{self, DeserializeOwned, Deserializer, Visitor};
use serde::Deserialize;

/// A single YAML value, kept as text: `15s`, `50`, `record`. Numbers and booleans written
/// without quotes are accepted too (as their text).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Scalar(pub String);

impl Scalar {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl<'de> Deserialize<'de> for Scalar {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Scalar;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a single value")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Scalar, E> {
                Ok(Scalar(v.to_owned()))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Scalar, E> {
                Ok(Scalar(v))
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }
        }
        d.deserialize_any(V)
    }
}

/// The whole file. `targets` is the only key without a default.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    #[serde(default)]
    pub api: RawApi,
    #[serde(default)]
    pub credentials: RawCredentials,
    #[serde(default)]
    pub budget: RawBudget,
    #[serde(default)]
    pub schedule: RawSchedule,
    /// `None` when the key is missing; an empty value is an empty list.
    #[serde(default, deserialize_with = "list")]
    pub targets: Option<Vec<RawTarget>>,
}

/// `api:`; absent keys take [`super::ApiSettings::default`]'s values.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawApi {
    #[serde(default)]
    pub endpoint: Option<Scalar>,
    #[serde(default)]
    pub region: Option<Scalar>,
    #[serde(default)]
    pub timeout: Option<Scalar>,
    #[serde(default)]
    pub max_in_flight: Option<Scalar>,
    #[serde(default)]
    pub record_version: Option<Scalar>,
    #[serde(default)]
    pub webcast_version: Option<Scalar>,
}

/// `credentials:`; all optional (see the chain in [`crate::credentials`]). Its `Debug` shows
/// which keys are set, never their values.
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCredentials {
    #[serde(default)]
    pub access_key_id_file: Option<Scalar>,
    #[serde(default)]
    pub secret_access_key_file: Option<Scalar>,
    #[serde(default)]
    pub session_token_file: Option<Scalar>,
    #[serde(default)]
    pub access_key_id: Option<Scalar>,
    #[serde(default)]
    pub secret_access_key: Option<Scalar>,
    #[serde(default)]
    pub session_token: Option<Scalar>,
}

impl fmt::Debug for RawCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let set = |v: &Option<Scalar>| if v.is_some() { "<set>" } else { "<unset>" };
        f.debug_struct("RawCredentials")
            .field("access_key_id_file", &self.access_key_id_file)
            .field("secret_access_key_file", &self.secret_access_key_file)
            .field("session_token_file", &self.session_token_file)
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &set(&self.secret_access_key))
            .field("session_token", &set(&self.session_token))
            .finish()
    }
}

/// `budget:`, requests per second per action; absent keys take [`super::default_budget`].
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBudget {
    #[serde(default, rename = "GetRecordTask")]
    pub get_record_task: Option<Scalar>,
    #[serde(default, rename = "GetWebCastTask")]
    pub get_webcast_task: Option<Scalar>,
}

/// `schedule:`; absent keys take [`super::ScheduleSettings::default`]'s values.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSchedule {
    #[serde(default)]
    pub active_interval: Option<Scalar>,
    #[serde(default)]
    pub settle_interval: Option<Scalar>,
    #[serde(default)]
    pub retention: Option<Scalar>,
}

/// One entry of `targets:`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTarget {
    #[serde(default)]
    pub kind: Option<Scalar>,
    #[serde(default)]
    pub app_id: Option<Scalar>,
    #[serde(default)]
    pub room_id: Option<Scalar>,
    #[serde(default)]
    pub task_id: Option<Scalar>,
    /// In file order; the walk has already removed duplicate names.
    #[serde(default, deserialize_with = "pairs")]
    pub labels: Vec<(String, Scalar)>,
}

/// An optional list, its vector sized from the deserializer's count up front (bounded, in
/// case a count is wrong) rather than grown by doubling: with ten thousand targets the spare
/// room would be most of a megabyte.
fn list<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<Vec<T>>, D::Error> {
    struct V<T>(PhantomData<T>);
    impl<'de, T: Deserialize<'de>> Visitor<'de> for V<T> {
        type Value = Option<Vec<T>>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a list")
        }
        fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_some<D2: Deserializer<'de>>(self, d: D2) -> Result<Self::Value, D2::Error> {
            d.deserialize_seq(self)
        }
        fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            const MOST_UP_FRONT: usize = 100_000;
            let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(MOST_UP_FRONT));
            while let Some(item) = seq.next_element()? {
                out.push(item);
            }
            Ok(Some(out))
        }
    }
    d.deserialize_option(V(PhantomData))
}

/// A mapping read as its list of entries: a map type would cost far more per target, and
/// nothing here looks labels up by name.
fn pairs<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<(String, Scalar)>, D::Error> {
    struct V;
    impl<'de> Visitor<'de> for V {
        type Value = Vec<(String, Scalar)>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a mapping of `name: value` pairs")
        }
        fn visit_map<A: de::MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let mut out = Vec::with_capacity(map.size_hint().unwrap_or(0).min(64));
            while let Some(entry) = map.next_entry()? {
                out.push(entry);
            }
            Ok(out)
        }
    }
    d.deserialize_map(V)
}

/// The keys serde accepts for `T` (its struct field names after renames), read from the
/// derived `Deserialize` impl itself; empty for a type that is not a struct.
pub fn field_names<T: DeserializeOwned>() -> &'static [&'static str] {
    let mut fields = None;
    let _ = T::deserialize(Introspect(&mut fields));
    fields.unwrap_or(&[])
}

/// A deserializer that only records the field list it is asked for, then fails.
struct Introspect<'a>(&'a mut Option<&'static [&'static str]>);

impl<'de> Deserializer<'de> for Introspect<'_> {
    type Error = de::value::Error;

    fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Self::Error> {
        Err(de::Error::custom("not a struct"))
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        _visitor: V,
    ) -> Result<V::Value, Self::Error> {
        *self.0 = Some(fields);
        Err(de::Error::custom("field names recorded"))
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        option unit unit_struct newtype_struct seq tuple tuple_struct map enum identifier
        ignored_any
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_names_come_from_serde() {
        assert_eq!(
            field_names::<RawBudget>(),
            &["GetRecordTask", "GetWebCastTask"]
        );
        assert_eq!(
            field_names::<RawConfig>(),
            &["api", "credentials", "budget", "schedule", "targets"]
        );
        assert!(field_names::<Scalar>().is_empty());
    }

    #[test]
    fn raw_structs_deny_unknown_fields_with_plain_serde_too() {
        let err = serde_yaml::from_str::<RawApi>("timeot: 5s").unwrap_err();
        assert!(err.to_string().contains("unknown field `timeot`"), "{err}");
        let ok: RawApi = serde_yaml::from_str("timeout: 5s\nmax_in_flight: 3").unwrap();
        assert_eq!(ok.max_in_flight, Some(Scalar("3".into())));
    }
}
