//! A small CSV reader (RFC 4180: commas, double quotes with `""` inside, CRLF or LF), enough
//! for `ratios.csv` and a team's `metrics.csv` without a new dependency. Each record keeps the
//! line it starts on, for errors.

/// One record: the line it starts on (1-based) and its fields.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    pub line: usize,
    pub fields: Vec<String>,
}

/// The header and the rows of `text`, every row as wide as the header. An error names the line.
pub fn table(text: &str) -> Result<(Record, Vec<Record>), String> {
    let mut rows = parse(text)?;
    if rows.is_empty() {
        return Err("empty: no header".into());
    }
    let head = rows.remove(0);
    for row in &rows {
        if row.fields.len() != head.fields.len() {
            return Err(format!(
                "line {}: {} fields, the header has {}",
                row.line,
                row.fields.len(),
                head.fields.len()
            ));
        }
    }
    Ok((head, rows))
}

/// Every record of `text`; blank lines are skipped. An error names the line.
pub fn parse(text: &str) -> Result<Vec<Record>, String> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut out = Vec::new();
    let mut chars = text.chars().peekable();
    let mut line = 1;
    while chars.peek().is_some() {
        let start = line;
        let mut fields = Vec::new();
        let mut field = String::new();
        let mut quoted = false;
        let mut was_quoted = false;
        loop {
            let Some(ch) = chars.next() else {
                if quoted {
                    return Err(format!("line {start}: a quoted field is not closed"));
                }
                fields.push(std::mem::take(&mut field));
                break;
            };
            if quoted {
                match ch {
                    '"' if chars.peek() == Some(&'"') => {
                        chars.next();
                        field.push('"');
                    }
                    '"' => quoted = false,
                    '\n' => {
                        line += 1;
                        field.push(ch);
                    }
                    _ => field.push(ch),
                }
                continue;
            }
            match ch {
                '"' if field.trim().is_empty() && !was_quoted => {
                    field.clear();
                    quoted = true;
                    was_quoted = true;
                }
                '"' => {
                    return Err(format!(
                        "line {line}: a double quote inside an unquoted field"
                    ));
                }
                ',' => {
                    fields.push(std::mem::take(&mut field));
                    was_quoted = false;
                }
                '\r' if chars.peek() == Some(&'\n') => {}
                '\n' => {
                    fields.push(std::mem::take(&mut field));
                    line += 1;
                    break;
                }
                _ if was_quoted && !ch.is_whitespace() => {
                    return Err(format!("line {line}: text after a closing double quote"));
                }
                _ => field.push(ch),
            }
        }
        if !(fields.len() == 1 && fields[0].trim().is_empty()) {
            out.push(Record {
                line: start,
                fields,
            });
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::parse;

    #[test]
    fn reads_quotes_crlf_and_blank_lines() {
        let got = parse("\u{feff}run,\"a,b\"\r\nx-0001,\"1.5\"\r\n\n\"y \"\"q\"\"\",2\n").unwrap();
        assert_eq!(got.len(), 3);
        assert_eq!(got[0].fields, ["run", "a,b"]);
        assert_eq!(
            (got[1].line, got[1].fields.clone()),
            (2, vec!["x-0001".into(), "1.5".into()])
        );
        assert_eq!(got[2].line, 4);
        assert_eq!(got[2].fields, ["y \"q\"", "2"]);
        assert_eq!(parse("a,b").unwrap()[0].fields, ["a", "b"]);
        assert_eq!(parse("a,\n").unwrap()[0].fields, ["a", ""]);
    }

    #[test]
    fn bad_quotes_name_the_line() {
        assert!(parse("a\n\"b").unwrap_err().contains("line 2"));
        assert!(parse("a\nb\"c\n").unwrap_err().contains("line 2"));
        assert!(parse("\"a\"b\n").unwrap_err().contains("line 1"));
    }
}
