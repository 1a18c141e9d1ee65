//! The HTML check for MitID transaction texts of type `html` (seed 002, "MitID Transaction
//! signing"): only the allowed tags; no `on*` attributes, no script link attributes
//! (`src`, `dynsrc`, `lowsrc`, `javascript:` ...), no CSS expressions, neither in `style`
//! attributes nor in `<style>` elements.
//!
//! A small strict tokenizer, not a browser: anything it cannot read unambiguously
//! (an unterminated tag, comment or attribute value, a processing instruction, CDATA) is
//! refused. Text between tags is not inspected: it is shown as text.

/// Seed 002, "Allowed HTML tags".
pub const ALLOWED_TAGS: &[&str] = &[
    "html", "body", "head", "style", "title", "div", "p", "ul", "li", "h1", "h2", "h3", "h4", "h5",
    "h6", "table", "font", "tr", "th", "td", "i", "u", "b", "center", "a", "q", "small",
];

/// Attributes that load a resource, refused whatever their value ("Script link attributes,
/// such as src, dynsrc, lowsrc").
const LINK_ATTRIBUTES: &[&str] = &["src", "dynsrc", "lowsrc", "srcset", "formaction", "action"];

/// Attributes holding a URL, where a `data:` URL could carry a document.
const URL_ATTRIBUTES: &[&str] = &["href", "background", "cite", "xlink:href"];

/// URL schemes that run script.
const SCRIPT_SCHEMES: &[&str] = &["javascript:", "vbscript:", "livescript:", "mocha:"];

/// Why an HTML text was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HtmlError(pub String);

fn err<T>(reason: impl Into<String>) -> Result<T, HtmlError> {
    Err(HtmlError(reason.into()))
}

/// Checks `html` against the seed's rules.
pub fn check(html: &str) -> Result<(), HtmlError> {
    let b = html.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] != b'<' {
            i += 1;
            continue;
        }
        let rest = &html[i + 1..];
        if let Some(comment) = rest.strip_prefix("!--") {
            let Some(end) = comment.find("-->") else {
                return err("unterminated comment");
            };
            let body = &comment[..end];
            if body.contains('<') || body.contains('>') || body.contains('[') {
                return err("comment with markup or a conditional");
            }
            i += 1 + 3 + end + 3;
        } else if rest.starts_with('!') {
            let Some(end) = rest.find('>') else {
                return err("unterminated declaration");
            };
            let decl = rest[1..end].trim().to_ascii_lowercase();
            if decl != "doctype html" {
                return err("only <!DOCTYPE html> is allowed as a declaration");
            }
            i += 1 + end + 1;
        } else if rest.starts_with('?') {
            return err("processing instruction");
        } else if let Some(close) = rest.strip_prefix('/') {
            let name_len = tag_name_len(close);
            if name_len == 0 {
                return err("malformed end tag");
            }
            check_tag(&close[..name_len])?;
            let after = close[name_len..].trim_start();
            if !after.starts_with('>') {
                return err("malformed end tag");
            }
            i = html.len() - after.len() + 1;
        } else if rest.bytes().next().is_some_and(|c| c.is_ascii_alphabetic()) {
            let name_len = tag_name_len(rest);
            let name = rest[..name_len].to_ascii_lowercase();
            check_tag(&name)?;
            let consumed = attributes(&rest[name_len..])?;
            i += 1 + name_len + consumed;
            if name == "style" {
                // The element's raw text runs to `</style`.
                let tail = &html[i..];
                let end = tail
                    .to_ascii_lowercase()
                    .find("</style")
                    .unwrap_or(tail.len());
                check_css(&tail[..end])?;
                i += end;
            }
        } else {
            // `<` followed by a space, digit...: text, as a browser reads it.
            i += 1;
        }
    }
    Ok(())
}

fn tag_name_len(s: &str) -> usize {
    s.bytes().take_while(u8::is_ascii_alphanumeric).count()
}

fn check_tag(name: &str) -> Result<(), HtmlError> {
    let lower = name.to_ascii_lowercase();
    if ALLOWED_TAGS.contains(&lower.as_str()) {
        Ok(())
    } else {
        err(format!("tag <{lower}> is not allowed"))
    }
}

/// Reads a start tag's attributes up to and including its `>`; returns the bytes read.
fn attributes(s: &str) -> Result<usize, HtmlError> {
    let b = s.as_bytes();
    let mut i = 0;
    loop {
        while i < b.len() && b[i].is_ascii_whitespace() {
            i += 1;
        }
        match b.get(i) {
            None => return err("unterminated tag"),
            Some(b'>') => return Ok(i + 1),
            Some(b'/') if b.get(i + 1) == Some(&b'>') => return Ok(i + 2),
            Some(b'/') => {
                i += 1;
                continue;
            }
            _ => {}
        }
        let start = i;
        while i < b.len() && !b[i].is_ascii_whitespace() && !b"=>/".contains(&b[i]) {
            if b"\"'<`".contains(&b[i]) {
                return err("malformed attribute name");
            }
            i += 1;
        }
        if i == start {
            return err("malformed attribute");
        }
        let name = s[start..i].to_ascii_lowercase();
        while i < b.len() && b[i].is_ascii_whitespace() {
            i += 1;
        }
        let mut value = "";
        if b.get(i) == Some(&b'=') {
            i += 1;
            while i < b.len() && b[i].is_ascii_whitespace() {
                i += 1;
            }
            match b.get(i) {
                Some(&q @ (b'"' | b'\'')) => {
                    let Some(len) = s[i + 1..].find(q as char) else {
                        return err("unterminated attribute value");
                    };
                    value = &s[i + 1..i + 1 + len];
                    i += len + 2;
                }
                Some(_) => {
                    let v = i;
                    while i < b.len() && !b[i].is_ascii_whitespace() && b[i] != b'>' {
                        if b"\"'<`=".contains(&b[i]) {
                            return err("malformed unquoted attribute value");
                        }
                        i += 1;
                    }
                    value = &s[v..i];
                }
                None => return err("unterminated tag"),
            }
        }
        check_attribute(&name, value)?;
    }
}

fn check_attribute(name: &str, value: &str) -> Result<(), HtmlError> {
    if name.starts_with("on") {
        return err(format!("event handler attribute {name}"));
    }
    if LINK_ATTRIBUTES.contains(&name) {
        return err(format!("script link attribute {name}"));
    }
    let v = normalize(value);
    let url_attribute = URL_ATTRIBUTES.contains(&name);
    if SCRIPT_SCHEMES.iter().any(|s| v.contains(s)) || (url_attribute && v.starts_with("data:")) {
        return err(format!("script link in attribute {name}"));
    }
    if name == "style" {
        check_css(value)?;
    }
    Ok(())
}

/// CSS in a `style` attribute or element: no `expression(...)` and no embedded script
/// links (`url(javascript:...)`, `@import`, `behavior`, `-moz-binding`).
fn check_css(css: &str) -> Result<(), HtmlError> {
    let mut v = String::with_capacity(css.len());
    // Drop comments, which can split a keyword (`expr/**/ession`).
    let mut rest = css;
    while let Some(start) = rest.find("/*") {
        v.push_str(&rest[..start]);
        rest = match rest[start + 2..].find("*/") {
            Some(end) => &rest[start + 2 + end + 2..],
            None => return err("unterminated CSS comment"),
        };
    }
    v.push_str(rest);
    let v = normalize(&v).replace('\\', "");
    for bad in [
        "expression(",
        "@import",
        "behavior:",
        "-moz-binding",
        "url(data:",
    ] {
        if v.contains(bad) {
            return err(format!("CSS {bad}"));
        }
    }
    if SCRIPT_SCHEMES.iter().any(|s| v.contains(s)) {
        return err("script link in CSS");
    }
    Ok(())
}

/// Lower case with character references decoded and whitespace and control characters
/// removed, so that `&#106;ava script:` reads as `javascript:`.
fn normalize(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(c) = rest.chars().next() {
        if c == '&' {
            if let Some((decoded, len)) = char_ref(rest) {
                if let Some(d) = decoded {
                    out.push(d);
                }
                rest = &rest[len..];
                continue;
            }
        }
        if !c.is_whitespace() && !c.is_control() {
            out.extend(c.to_lowercase());
        }
        rest = &rest[c.len_utf8()..];
    }
    out
}

/// A character reference at the start of `s` (`&#106;`, `&#x6A`, `&colon;`): the
/// character (or `None` for one that only hides whitespace) and its length in bytes.
fn char_ref(s: &str) -> Option<(Option<char>, usize)> {
    let body = &s[1..];
    if let Some(num) = body.strip_prefix('#') {
        let (digits, radix, skip) = match num.strip_prefix(['x', 'X']) {
            Some(hex) => (hex, 16, 3),
            None => (num, 10, 2),
        };
        let len = digits
            .bytes()
            .take_while(|b| (*b as char).is_digit(radix))
            .count();
        if len == 0 {
            return None;
        }
        let c = u32::from_str_radix(&digits[..len], radix)
            .ok()
            .and_then(char::from_u32)
            .unwrap_or('\u{fffd}');
        let semi = usize::from(digits[len..].starts_with(';'));
        return Some((Some(c), skip + len + semi));
    }
    for (name, c) in [
        ("colon;", Some(':')),
        ("tab;", None),
        ("newline;", None),
        ("lpar;", Some('(')),
        ("rpar;", Some(')')),
        ("sol;", Some('/')),
        ("bsol;", Some('\\')),
    ] {
        if body.len() >= name.len() && body[..name.len()].eq_ignore_ascii_case(name) {
            return Some((c, 1 + name.len()));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_the_allowed_tags() {
        for ok in [
            "plain text, no tags",
            "<!DOCTYPE html><html><head><title>Pay</title><style>p { color: red; }</style></head>\
             <body><div><p>Pay <b>100</b> <i>DKK</i> to <u>X</u></p><ul><li>a</li></ul>\
             <table><tr><th>h</th><td>d</td></tr></table><font color=\"red\">r</font>\
             <center><h1>1</h1><h6>6</h6></center><a href=\"https://example.dk/x\">l</a>\
             <q>q</q><small>s</small></div></body></html>",
            "<P CLASS='x'>upper case</P>",
            "<p>3 < 4 and 5 > 4</p>",
            "<div style=\"color: blue; font-weight: bold\">styled</div>",
            "<p><!-- a note --></p>",
            "<p/>",
            "<p title=\"data: 5 rows\">table</p>",
        ] {
            assert_eq!(check(ok), Ok(()), "{ok}");
        }
    }

    #[test]
    fn refuses_disallowed_tags_attributes_and_expressions() {
        for bad in [
            "<script>alert(1)</script>",
            "<img src=x>",
            "<iframe></iframe>",
            "<p onclick=\"x()\">a</p>",
            "<body onload=x()>",
            "<p ONMOUSEOVER='x'>",
            "<a href=\"javascript:alert(1)\">x</a>",
            "<a href=\"JaVaScRiPt:alert(1)\">x</a>",
            "<a href=\"java\tscript:alert(1)\">x</a>",
            "<a href=\"&#106;avascript:alert(1)\">x</a>",
            "<a href=\"&#x6A;avascript&colon;alert(1)\">x</a>",
            "<a href=\"vbscript:x\">x</a>",
            "<a href=\"data:text/html;base64,PHNjcmlwdD4=\">x</a>",
            "<p dynsrc=\"x\">",
            "<p lowsrc=\"x\">",
            "<div style=\"width: expression(alert(1))\">",
            "<div style=\"width: expr/**/ession(alert(1))\">",
            "<div style=\"width: e\\xpression(alert(1))\">",
            "<div style=\"background: url(javascript:alert(1))\">",
            "<div style=\"behavior: url(x.htc)\">",
            "<style>p { width: expression(alert(1)) }</style>",
            "<style>@import url(evil.css);</style>",
            "<style>body { background: url('javascript:alert(1)') }</style>",
            "<p title=\"unterminated>",
            "<p",
            "<!-- <script> -->",
            "<!--[if IE]><p><![endif]-->",
            "<![CDATA[x]]>",
            "<?xml version=\"1.0\"?>",
            "</script>",
            "<svg><p>",
        ] {
            assert!(check(bad).is_err(), "{bad}");
        }
    }
}
