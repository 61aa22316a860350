//! The columns of an import file and how each fills a `User`: the User
//! fields' JSON names as grpcurl users type them (`userId`, `ciam.email`,
//! `attributes.KEY` ...). A CSV row and an NDJSON object go through the same
//! setter, so both formats accept exactly the same fields; the three columns
//! a failed-rows file adds (`target`, `errorCode`, `errorMessage`) are
//! ignored, so a fixed failed-rows file can be fed back as it is.

use serde_json::Value;

use crate::api::pb;

/// How a column's CSV cell is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Text,
    /// `a;b;c` in CSV, an array of strings in NDJSON.
    List,
    Integer,
    /// The enum value's proto name, or its short form (`SHA1`, `TAIL`).
    Enum,
    /// A JSON array of `{"name", "value", "type"}` objects, in CSV too.
    Objects,
}

/// Every column but `attributes.KEY`, in the proto's order.
const COLUMNS: &[(&str, Kind)] = &[
    ("userId", Kind::Text),
    ("displayName", Kind::Text),
    ("avatarUrl", Kind::Text),
    ("tags", Kind::List),
    ("ciam.userName", Kind::Text),
    ("ciam.phoneNumber", Kind::Text),
    ("ciam.email", Kind::Text),
    ("ciam.password", Kind::Text),
    ("ciam.nickname", Kind::Text),
    ("ciam.address", Kind::Text),
    ("ciam.userGroups", Kind::List),
    ("ciam.birthdateUnixMs", Kind::Integer),
    ("ciam.customizationAttributes", Kind::Objects),
    ("ciam.indexedAttributes", Kind::List),
    ("ciam.passwordHash", Kind::Text),
    ("ciam.passwordHashType", Kind::Enum),
    ("ciam.saltValue", Kind::Text),
    ("ciam.saltLocation", Kind::Enum),
    ("ciam.saltRegex", Kind::Text),
];

/// The prefix of the columns that fill `attributes`.
const ATTRIBUTE_PREFIX: &str = "attributes.";

/// The columns a failed-rows file adds, ignored on input.
pub const ADDED_COLUMNS: [&str; 3] = ["target", "errorCode", "errorMessage"];

/// The known columns, for the message naming an unknown one.
pub fn known_columns() -> String {
    let mut names: Vec<&str> = COLUMNS.iter().map(|(name, _)| *name).collect();
    names.push("attributes.KEY");
    names.join(", ")
}

/// What a column does with its value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Column {
    Field(&'static str),
    Attribute(String),
    Ignored,
}

impl Column {
    /// The column named `name`; `None` when no User field has that name.
    pub fn named(name: &str) -> Option<Column> {
        if ADDED_COLUMNS.contains(&name) {
            return Some(Column::Ignored);
        }
        if let Some(key) = name.strip_prefix(ATTRIBUTE_PREFIX)
            && !key.is_empty()
        {
            return Some(Column::Attribute(key.to_owned()));
        }
        COLUMNS
            .iter()
            .find(|(known, _)| *known == name)
            .map(|(known, _)| Column::Field(known))
    }

    /// Sets this column's CSV cell on `user`; an empty cell leaves the field unset.
    pub fn set_from_cell(&self, user: &mut pb::User, cell: &str) -> Result<(), String> {
        if cell.is_empty() {
            return Ok(());
        }
        match self {
            Column::Ignored => Ok(()),
            Column::Attribute(key) => {
                user.attributes.insert(key.clone(), cell.to_owned());
                Ok(())
            }
            Column::Field(name) => {
                let value = match kind_of(name) {
                    Kind::Text | Kind::Enum => Value::String(cell.to_owned()),
                    Kind::List => Value::Array(
                        cell.split(';')
                            .map(|item| Value::String(item.to_owned()))
                            .collect(),
                    ),
                    Kind::Integer => Value::Number(
                        cell.trim()
                            .parse::<i64>()
                            .map_err(|_| format!("{name}: {cell:?} is not an integer"))?
                            .into(),
                    ),
                    Kind::Objects => serde_json::from_str(cell)
                        .map_err(|error| format!("{name}: not a JSON array: {error}"))?,
                };
                set_field(user, name, &value)
            }
        }
    }
}

fn kind_of(name: &str) -> Kind {
    COLUMNS
        .iter()
        .find(|(known, _)| *known == name)
        .map_or(Kind::Text, |(_, kind)| *kind)
}

/// The User an NDJSON line's object describes. Keys are the User fields'
/// JSON names, nested as in proto3 JSON (`{"ciam": {"email": ...}}`,
/// `{"attributes": {"KEY": ...}}`); dotted CSV names are accepted too.
pub fn user_from_object(object: &serde_json::Map<String, Value>) -> Result<pb::User, String> {
    let mut user = pb::User::default();
    for (key, value) in object {
        match key.as_str() {
            "attributes" => {
                let Value::Object(attributes) = value else {
                    return Err("attributes: expected an object of strings".to_owned());
                };
                for (name, value) in attributes {
                    let Value::String(text) = value else {
                        return Err(format!("attributes.{name}: expected a string"));
                    };
                    user.attributes.insert(name.clone(), text.clone());
                }
            }
            "ciam" => {
                let Value::Object(ciam) = value else {
                    return Err("ciam: expected an object".to_owned());
                };
                for (name, value) in ciam {
                    let column = format!("ciam.{name}");
                    match Column::named(&column) {
                        Some(Column::Field(field)) => set_field(&mut user, field, value)?,
                        _ => return Err(unknown(&column)),
                    }
                }
            }
            other => match Column::named(other) {
                Some(Column::Field(field)) => set_field(&mut user, field, value)?,
                Some(Column::Attribute(name)) => {
                    let Value::String(text) = value else {
                        return Err(format!("{other}: expected a string"));
                    };
                    user.attributes.insert(name, text.clone());
                }
                Some(Column::Ignored) => {}
                None => return Err(unknown(other)),
            },
        }
    }
    Ok(user)
}

/// The names of an NDJSON object's keys that are not User fields.
pub fn unknown_keys(object: &serde_json::Map<String, Value>) -> Vec<String> {
    let mut unknown = Vec::new();
    for (key, value) in object {
        match (key.as_str(), value) {
            ("attributes", _) => {}
            ("ciam", Value::Object(ciam)) => unknown.extend(
                ciam.keys()
                    .map(|name| format!("ciam.{name}"))
                    .filter(|column| !matches!(Column::named(column), Some(Column::Field(_)))),
            ),
            ("ciam", _) => {}
            (other, _) if Column::named(other).is_none() => unknown.push(other.to_owned()),
            _ => {}
        }
    }
    unknown
}

fn unknown(name: &str) -> String {
    format!(
        "unknown field {name:?}; the known ones are {}",
        known_columns()
    )
}

fn text(name: &str, value: &Value) -> Result<String, String> {
    match value {
        Value::String(text) => Ok(text.clone()),
        Value::Null => Ok(String::new()),
        other => Err(format!("{name}: expected a string, got {other}")),
    }
}

fn list(name: &str, value: &Value) -> Result<Vec<String>, String> {
    match value {
        Value::Array(items) => items.iter().map(|item| text(name, item)).collect(),
        Value::Null => Ok(Vec::new()),
        other => Err(format!("{name}: expected an array of strings, got {other}")),
    }
}

fn integer(name: &str, value: &Value) -> Result<i64, String> {
    match value {
        Value::Number(number) => number
            .as_i64()
            .ok_or_else(|| format!("{name}: {number} is not a 64-bit integer")),
        // proto3 JSON writes int64 as a string
        Value::String(text) => text
            .trim()
            .parse()
            .map_err(|_| format!("{name}: {text:?} is not an integer")),
        Value::Null => Ok(0),
        other => Err(format!("{name}: expected an integer, got {other}")),
    }
}

/// An enum value by its proto name or the part after the type's prefix.
fn enum_value(
    name: &str,
    value: &Value,
    prefix: &str,
    from_name: fn(&str) -> Option<i32>,
) -> Result<i32, String> {
    let text = text(name, value)?;
    if text.is_empty() {
        return Ok(0);
    }
    let upper = text.to_ascii_uppercase();
    let full = if upper.starts_with(prefix) {
        upper
    } else {
        format!("{prefix}{upper}")
    };
    from_name(&full).ok_or_else(|| format!("{name}: {text:?} is not one of the {prefix}* values"))
}

fn attributes(name: &str, value: &Value) -> Result<Vec<pb::CiamAttribute>, String> {
    let Value::Array(items) = value else {
        return Err(format!(
            "{name}: expected an array of {{\"name\", \"value\", \"type\"}} objects"
        ));
    };
    items
        .iter()
        .map(|item| {
            let Value::Object(fields) = item else {
                return Err(format!("{name}: each item must be an object"));
            };
            let field = |key: &str| fields.get(key).map_or(Ok(String::new()), |v| text(name, v));
            Ok(pb::CiamAttribute {
                name: field("name")?,
                value: field("value")?,
                r#type: field("type")?,
            })
        })
        .collect()
}

fn set_field(user: &mut pb::User, name: &str, value: &Value) -> Result<(), String> {
    let ciam = || pb::CiamProfile::default();
    match name {
        "userId" => user.user_id = text(name, value)?,
        "displayName" => user.display_name = text(name, value)?,
        "avatarUrl" => user.avatar_url = text(name, value)?,
        "tags" => user.tags = list(name, value)?,
        _ => {
            let profile = user.ciam.get_or_insert_with(ciam);
            match name {
                "ciam.userName" => profile.user_name = text(name, value)?,
                "ciam.phoneNumber" => profile.phone_number = text(name, value)?,
                "ciam.email" => profile.email = text(name, value)?,
                "ciam.password" => profile.password = text(name, value)?,
                "ciam.nickname" => profile.nickname = text(name, value)?,
                "ciam.address" => profile.address = text(name, value)?,
                "ciam.userGroups" => profile.user_groups = list(name, value)?,
                "ciam.birthdateUnixMs" => profile.birthdate_unix_ms = integer(name, value)?,
                "ciam.customizationAttributes" => {
                    profile.customization_attributes = attributes(name, value)?
                }
                "ciam.indexedAttributes" => profile.indexed_attributes = list(name, value)?,
                "ciam.passwordHash" => profile.password_hash = text(name, value)?,
                "ciam.passwordHashType" => {
                    profile.password_hash_type =
                        enum_value(name, value, "PASSWORD_HASH_TYPE_", |full| {
                            pb::PasswordHashType::from_str_name(full).map(|v| v as i32)
                        })?
                }
                "ciam.saltValue" => profile.salt_value = text(name, value)?,
                "ciam.saltLocation" => {
                    profile.salt_location = enum_value(name, value, "SALT_LOCATION_", |full| {
                        pb::SaltLocation::from_str_name(full).map(|v| v as i32)
                    })?
                }
                "ciam.saltRegex" => profile.salt_regex = text(name, value)?,
                other => return Err(unknown(other)),
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use prost::Message;
    use prost_types::FileDescriptorSet;

    use super::*;

    fn object(json: &str) -> serde_json::Map<String, Value> {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn every_user_and_ciam_field_has_a_column() {
        let set = FileDescriptorSet::decode(pb::FILE_DESCRIPTOR_SET).unwrap();
        let messages: Vec<_> = set
            .file
            .iter()
            .flat_map(|file| file.message_type.iter())
            .collect();
        let fields = |message: &str| -> Vec<String> {
            messages
                .iter()
                .find(|m| m.name() == message)
                .unwrap()
                .field
                .iter()
                .map(|field| field.json_name().to_owned())
                .collect()
        };
        for field in fields("User") {
            match field.as_str() {
                "attributes" => assert_eq!(
                    Column::named("attributes.tier"),
                    Some(Column::Attribute("tier".into()))
                ),
                "ciam" => {}
                name => assert!(
                    matches!(Column::named(name), Some(Column::Field(_))),
                    "{name}"
                ),
            }
        }
        for field in fields("CiamProfile") {
            let column = format!("ciam.{field}");
            assert!(
                matches!(Column::named(&column), Some(Column::Field(_))),
                "{column}"
            );
        }
    }

    #[test]
    fn a_csv_row_and_an_ndjson_object_make_the_same_user() {
        let header = [
            "userId",
            "tags",
            "attributes.tier",
            "ciam.email",
            "ciam.birthdateUnixMs",
            "ciam.passwordHashType",
            "ciam.customizationAttributes",
            "errorCode",
        ];
        let cells = [
            "u1",
            "a;b",
            "gold",
            "u1@example.com",
            "86400000",
            "sha1",
            r#"[{"name":"n","value":"v","type":"STRING"}]"#,
            "validation.required",
        ];
        let mut from_csv = pb::User::default();
        for (name, cell) in header.iter().zip(cells) {
            Column::named(name)
                .unwrap()
                .set_from_cell(&mut from_csv, cell)
                .unwrap();
        }
        let from_json = user_from_object(&object(
            r#"{"userId":"u1","tags":["a","b"],"attributes":{"tier":"gold"},
                "ciam":{"email":"u1@example.com","birthdateUnixMs":"86400000",
                        "passwordHashType":"PASSWORD_HASH_TYPE_SHA1",
                        "customizationAttributes":[{"name":"n","value":"v","type":"STRING"}]},
                "errorCode":"validation.required"}"#,
        ))
        .unwrap();
        assert_eq!(from_csv, from_json);
        let ciam = from_csv.ciam.unwrap();
        assert_eq!(ciam.password_hash_type, pb::PasswordHashType::Sha1 as i32);
        assert_eq!(ciam.birthdate_unix_ms, 86_400_000);
    }

    #[test]
    fn unknown_names_and_wrong_types_are_named() {
        assert_eq!(Column::named("userid"), None);
        assert_eq!(Column::named("attributes."), None);
        assert_eq!(
            unknown_keys(&object(r#"{"userId":"u","nick":"x","ciam":{"mail":"m"}}"#)),
            ["ciam.mail", "nick"]
        );
        let error = user_from_object(&object(r#"{"userId":7}"#)).unwrap_err();
        assert!(error.contains("userId: expected a string"), "{error}");
        let mut user = pb::User::default();
        let error = Column::named("ciam.birthdateUnixMs")
            .unwrap()
            .set_from_cell(&mut user, "soon")
            .unwrap_err();
        assert!(error.contains("ciam.birthdateUnixMs"), "{error}");
        let error = Column::named("ciam.saltLocation")
            .unwrap()
            .set_from_cell(&mut user, "middle")
            .unwrap_err();
        assert!(error.contains("SALT_LOCATION_"), "{error}");
    }
}
