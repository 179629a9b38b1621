//! Server-Sent Events as the bridge's output stream sends them (`event:`,
//! `id:`, `data:` lines, a blank line ends an event; `:` lines are
//! keep-alives), read line by line from a blocking response.

use std::io::BufRead;

#[derive(Debug, Default, PartialEq)]
pub struct Event {
    pub event: String,
    pub id: Option<String>,
    pub data: String,
}

/// The next event, or None at the end of the stream.
pub fn next_event(reader: &mut impl BufRead) -> std::io::Result<Option<Event>> {
    let mut event = Event::default();
    let mut seen = false;
    let mut line = String::new();
    loop {
        line.clear();
        if reader.read_line(&mut line)? == 0 {
            return Ok(seen.then_some(event));
        }
        let line = line.strip_suffix('\n').unwrap_or(&line);
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.is_empty() {
            if seen {
                if event.event.is_empty() {
                    event.event = "message".into();
                }
                return Ok(Some(event));
            }
            continue;
        }
        if line.starts_with(':') {
            continue;
        }
        let (field, value) = line.split_once(':').unwrap_or((line, ""));
        let value = value.strip_prefix(' ').unwrap_or(value);
        seen = true;
        match field {
            "event" => event.event = value.to_owned(),
            "id" => event.id = Some(value.to_owned()),
            "data" => {
                if !event.data.is_empty() {
                    event.data.push('\n');
                }
                event.data.push_str(value);
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_split_and_multi_line_data_joined() {
        let text = ": keep-alive\n\nevent: output\nid: 12\ndata: hello\ndata: world\n\nevent: end\ndata: 12\n\n";
        let mut reader = std::io::Cursor::new(text);
        let first = next_event(&mut reader).unwrap().unwrap();
        assert_eq!(first, Event { event: "output".into(), id: Some("12".into()), data: "hello\nworld".into() });
        let second = next_event(&mut reader).unwrap().unwrap();
        assert_eq!((second.event.as_str(), second.data.as_str()), ("end", "12"));
        assert_eq!(next_event(&mut reader).unwrap(), None);
    }
}
