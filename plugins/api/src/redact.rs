//! URLs as they may be shown: in logs, errors, `/health`. A password or token often rides
//! inside a URL (`mqtt://user:${MQTT_PASSWORD}@host`, `wss://server/api?token=...`), so
//! every URL a person sees has its user information and its query values replaced by
//! `***`. The host, port and path stay: they are what a person needs to find the problem.

/// `text` with the user information and every query value of a URL replaced by `***`.
/// Text that is not a URL comes back as it is.
pub fn url(text: &str) -> String {
    let Ok(mut parsed) = url::Url::parse(text) else {
        return by_hand(text);
    };
    if !parsed.username().is_empty() || parsed.password().is_some() {
        // Both can fail only for URLs that cannot have them (`mailto:`): nothing to hide.
        let _ = parsed.set_username("***");
        let _ = parsed.set_password(None);
    }
    if parsed.query().is_some() {
        let names: Vec<String> = parsed
            .query_pairs()
            .map(|(name, _)| name.into_owned())
            .collect();
        let redacted: Vec<String> = names.iter().map(|name| format!("{name}=***")).collect();
        parsed.set_query(Some(&redacted.join("&")));
    }
    parsed.to_string()
}

/// Every URL in a message (a word with `://` in it) redacted as [`url`] does.
pub fn urls_in(message: &str) -> String {
    if !message.contains("://") {
        return message.to_string();
    }
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    while let Some(at) = rest.find("://") {
        // The URL starts at the scheme: back up over letters, digits and `+-.`.
        let start = rest[..at]
            .rfind(|c: char| !(c.is_ascii_alphanumeric() || "+-.".contains(c)))
            .map_or(0, |i| i + 1);
        let end = rest[at..]
            .find(|c: char| c.is_whitespace() || "`'\"<>(){},".contains(c))
            .map_or(rest.len(), |i| at + i);
        out.push_str(&rest[..start]);
        out.push_str(&url(&rest[start..end]));
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}

/// For text `url::Url` refuses (a broker address with an odd host): cut the user
/// information before `@` and the query after `?` without parsing the rest.
fn by_hand(text: &str) -> String {
    let Some((scheme, rest)) = text.split_once("://") else {
        return text.to_string();
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let host = match authority.rsplit_once('@') {
        Some((_, host)) => format!("***@{host}"),
        None => authority.to_string(),
    };
    let tail = match tail.split_once('?') {
        Some((path, _)) => format!("{path}?***"),
        None => tail.to_string(),
    };
    format!("{scheme}://{host}{tail}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_tokens_and_query_values_are_hidden() {
        assert_eq!(
            url("mqtt://gate:s3cret@broker.local:1883"),
            "mqtt://***@broker.local:1883"
        );
        assert_eq!(
            url("wss://yorkfs.emperorservers.com/api/race-control?token=abc&x=1"),
            "wss://yorkfs.emperorservers.com/api/race-control?token=***&x=***"
        );
        assert_eq!(
            url("https://me:pw@api.openf1.org/v1?key=k"),
            "https://***@api.openf1.org/v1?key=***"
        );
        assert_eq!(url("mqtt://127.0.0.1:1883"), "mqtt://127.0.0.1:1883");
        assert_eq!(url("not a url"), "not a url");
        assert_eq!(url("tcp://u:p@[::1:1883?t=1"), "tcp://***@[::1:1883?***");
    }

    #[test]
    fn urls_inside_messages_are_hidden_and_the_rest_kept() {
        assert_eq!(
            urls_in("cannot connect to `mqtt://u:pw@h:1883`: refused"),
            "cannot connect to `mqtt://***@h:1883`: refused"
        );
        assert_eq!(
            urls_in("GET https://h/v1/laps?session_key=9158 failed, then wss://s/a?token=t"),
            "GET https://h/v1/laps?session_key=*** failed, then wss://s/a?token=***"
        );
        assert_eq!(urls_in("no url here"), "no url here");
    }
}
