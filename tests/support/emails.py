"""Email addresses Mautic and Mailgun refuse, rewrite or take: the examples the email tests share.

Each group has one reason; a test composes the groups it checks (and adds its own cases).
"""

from __future__ import annotations

# Not one address at all.
MALFORMED = [
    "not-an-email",
    "x@",
    "@example.com",
    "a@b@c.com",
    "jane doe@example.com",
    "jane\uff20example.com",  # a fullwidth at sign
]
# A CR/LF inside: a header injection wherever the address reaches a mail header.
BCC_INJECTION = "jane@example.com\r\nbcc: x@example.org"
CRLF_INJECTED = ["ja\r\nne@example.com", BCC_INJECTION]
# A NUL, or dots and hyphens where no part of an address may have them.
BAD_LABELS = [
    "jane@exa\x00mple.com",
    "a..b@example.com",
    ".a@example.com",
    "a@-example.com",
]
# Refused by both: not one bare RFC 5322 address.
NOT_AN_ADDRESS = [
    *MALFORMED,
    *CRLF_INJECTED,
    *BAD_LABELS,
    "a@exa_mple.com",
    "jane@localhost",
    "jane <jane@example.com>",
    " jane@example.com",
]
# Mailgun takes these; Mautic refuses them (filter_var, ^&*%) or would store another address.
MAUTIC_REFUSED_PARTS = [
    "jürgen@bücher.de",  # non-ASCII: FILTER_SANITIZE_EMAIL strips it to jrgen@bcher.de
    "a/b@example.com",  # the slash is stripped: ab@example.com
    "a%b@example.com",  # hasValidCharacters
    "a@example.1c",  # the top-level domain starts with a digit
    "x" * 65 + "@example.com",  # local part over 64
]
MAUTIC_ONLY_REFUSES = [
    *MAUTIC_REFUSED_PARTS,
    "a@" + "b" * 63 + "." + "c" * 63 + "." + "d" * 63 + ".com",  # over Mautic's 191-character column
]
# Unusual, yet taken by both as given.
UNUSUAL_BUT_VALID = [
    "user+tag@example.co.uk",
    "o'brien@example.ie",
    "jane@xn--bcher-kva.de",
    "x" * 64 + "@example.com",
]
BOTH_ACCEPT = [
    "jane.doe@example.com",
    "Jane.Doe@Example.COM",
    *UNUSUAL_BUT_VALID,
]
