"""Does a memory's text read like an instruction aimed at an agent? `flag_reason(text)` answers with a
short reason for a person ("reads like an instruction to the agent: 'ignore all previous
instructions'") or None.

What is flagged: text that tries to override the agent's instructions, impersonates a system or
developer message ("IMPORTANT SYSTEM NOTE", "you must now", "from now on you ..."), asks the agent to
hide something from the user, asks it to send secrets (environment, keys, tokens, .env, SSH keys) to
somewhere, or tells it to run fetched code (`curl ... | sh`, `bash <(wget ...)`, `iex (iwr ...)`,
`base64 -d | sh`, `eval "$(curl ...)"`, `exec(requests.get(...).text)`). What is not: ordinary
engineering notes, commands included (`pip install x`, `curl -fsS .../healthz`, `curl ... | jq`), and
notes that discuss such phrases as a topic: a match that sits only inside quotes, in a text that
talks about injections, attacks, filters or examples, is a mention, not an instruction.

Guarantees: pure Python (regular expressions only, no model, no I/O), deterministic, never raises on
any `str`, and fast (about 0.1 ms for a note of a few hundred characters, against milliseconds to embed
it; cheap keyword tests skip the rules a text cannot match; at most `MAX_SCAN` characters are read,
from its beginning and its end). The text is read through the disguises an attacker can use for free:
Unicode compatibility forms (NFKC: fullwidth, mathematical letters), Cyrillic and Greek look-alikes,
zero-width, bidi and other invisible format characters (removed), invisible Unicode tag characters
(decoded and read as well), HTML entities, Markdown emphasis, quoting and code marks, letters spaced
out ("i g n o r e") and digits for letters ("1gn0re"). It is a heuristic: a determined writer can
phrase an instruction it does not know, so a memory without a flag is still data, never a command.
"""

from __future__ import annotations

import html
import re
import unicodedata

__all__ = ["MAX_SCAN", "flag_reason", "normalize"]

MAX_SCAN = 20_000  # characters read: the first and last half of this (an attack hides at either end)

# Cyrillic, Greek and other letters that look like Latin ones (after NFKC), mapped to the Latin letter.
_CONFUSABLES = str.maketrans({
    "а": "a", "в": "b", "е": "e", "ё": "e", "к": "k", "м": "m", "н": "h", "о": "o", "р": "p", "с": "c",
    "т": "t", "у": "y", "х": "x", "ѕ": "s", "і": "i", "ї": "i", "ј": "j", "ԁ": "d", "ԛ": "q", "ԝ": "w",
    "һ": "h", "ү": "y", "ɡ": "g", "ı": "i", "ℓ": "l",
    "А": "A", "В": "B", "Е": "E", "К": "K", "М": "M", "Н": "H", "О": "O", "Р": "P", "С": "C", "Т": "T",
    "Х": "X", "Ѕ": "S", "І": "I", "Ј": "J", "Ү": "Y",
    "α": "a", "β": "b", "ε": "e", "η": "n", "ι": "i", "κ": "k", "ν": "v", "ο": "o", "ρ": "p", "τ": "t",
    "υ": "u", "χ": "x", "ω": "w", "ς": "s",
    "Α": "A", "Β": "B", "Ε": "E", "Ζ": "Z", "Η": "H", "Ι": "I", "Κ": "K", "Μ": "M", "Ν": "N", "Ο": "O",
    "Ρ": "P", "Τ": "T", "Υ": "Y", "Χ": "X",
    "‘": "'", "’": "'", "‚": "'", "‛": "'", "“": '"', "”": '"', "„": '"', "«": '"', "»": '"',
    "‐": "-", "‑": "-", "‒": "-", "–": "-", "—": "-", "−": "-", "｜": "|", "│": "|", "∣": "|",
})
_LEET = str.maketrans({"0": "o", "1": "i", "3": "e", "4": "a", "5": "s", "7": "t", "@": "a", "$": "s",
                       "!": "i", "|": "i"})
_TAG_BASE = 0xE0000  # Unicode tag characters: invisible copies of ASCII (U+E0020..U+E007E)


def _visible(text: str) -> str:
    """`text` without invisible format characters; text hidden in tag characters is added at the end."""
    if text.isascii():
        return text
    hidden = "".join(chr(ord(c) - _TAG_BASE) for c in text if 0xE0020 <= ord(c) <= 0xE007E)
    kept = "".join(c for c in text if unicodedata.category(c) != "Cf")
    return f"{kept}\n{hidden}" if hidden else kept


def normalize(text: str) -> str:
    """The text an agent would read, casefolded: format characters removed (tag text decoded), NFKC,
    look-alike letters mapped to Latin, HTML entities decoded, whitespace runs made one space."""
    if len(text) > MAX_SCAN:
        text = text[: MAX_SCAN // 2] + "\n" + text[-MAX_SCAN // 2:]
    text = _visible(text)
    if not text.isascii():
        text = unicodedata.normalize("NFKC", text).translate(_CONFUSABLES)
        text = _visible(text)
    if "&" in text:
        text = html.unescape(text)
    return re.sub(r"[ \t\r\f\v]+", " ", text.casefold())


_SPACED = re.compile(r"\b(?:[a-z] ){3,}[a-z]\b")


def _words(text: str) -> str:
    """Letters, digits and a few signs only, one space between words ("**Ignore** all `previous`
    instructions" reads "ignore all previous instructions"); letters spaced out are joined."""
    out = re.sub(r"[^a-z0-9'.,:;!?/@$|\n-]+", " ", text)
    out = _SPACED.sub(lambda m: m.group(0).replace(" ", ""), out)
    return re.sub(r" +", " ", out)


# ---- phrases addressed to the agent ---------------------------------------------------------------

_ALL = r"(?:(?:all|any|every|each|of|the|your|my|our|these|those|its|previous|prior|above|earlier|preceding|" \
       r"existing|original|initial|current|other|system|safety|developer|default|standing|old|given|" \
       r"such|[a-z]+'s) ){0,5}"
_RULES_WORD = r"(?:instructions?|prompts?|rules?|directives?|guidelines?|guidance|constraints?|" \
              r"restrictions?|policies|policy|orders|commands|context|messages?|programming|guardrails?)"
_OVERRIDE = re.compile(
    r"\b(?:ignore|disregard|forget|override|overrule|bypass|discard|drop|abandon|skip|set aside|throw out|"
    r"stop following|do not follow|don't follow|no longer follow)\b ?" + _ALL + _RULES_WORD + r"\b"
    r"|\b(?:ignore|disregard|forget) (?:everything|anything|all)(?: (?:you (?:were|have been) told|"
    r"(?:said |written )?(?:above|before|earlier|previously|so far)))\b"
    r"|\b(?:previous|prior|above|earlier|old|original) " + _RULES_WORD + r" (?:are|is) (?:now )?(?:void|"
    r"cancel+ed|revoked|obsolete|superseded|no longer valid|outdated|replaced)\b"
    r"|\bnew (?:system )?(?:instructions|rules|directives|orders)(?: follow)? ?:"
    r"|\byour (?:new|real|true|actual|updated) (?:instructions|task|goal|objective|orders|directive|"
    r"purpose|mission) (?:is|are)\b"
)
_IMPERSONATION = re.compile(
    r"\b(?:important|urgent|critical|mandatory|priority|official|high priority) ?:? (?:system|admin|"
    r"administrator|developer|security|operator) (?:note|notice|message|instruction|instructions|prompt|"
    r"update|directive|alert|override|requirement)s?\b"
    r"|\bsystem (?:note|notice|message|instruction|prompt|override|directive) ?:"
    r"|(?:^|\n) ?(?:#+ ?)?(?:\[ ?)?(?:system|admin|developer|operator|assistant)(?: ?\])? ?:"
    r"|(?:^|\n) ?(?:system|developer) (?:prompt|message|instructions?) ?(?:\n|:)"
    r"|<\|?/? ?(?:system|im_start|im_end|endoftext|instructions?)\|?>|\[/?(?:inst|system|sys)\]"
    r"|\b(?:begin|start|end) (?:of )?(?:the )?(?:system|developer|admin) (?:prompt|message|instructions?)\b"
    r"|\byou must now\b|\byou are now (?:a|an|in|the|my|free|no longer|unrestricted|jailbroken|dan)\b"
    r"|\bfrom now on,? (?:you|the (?:agent|assistant|ai|model))(?: will| must| should| are| shall| have to"
    r"| need to|'ll)\b"
    r"|\b(?:you have been|you are|you're) (?:now )?(?:granted|given|authori[sz]ed|cleared|permitted) "
    r"(?:to|full|admin|root|unrestricted|elevated)\b"
    r"|\b(?:enter|entering|enable|activate|switch to) (?:developer|god|admin|debug|jailbreak|unrestricted|dan) "
    r"mode\b"
    r"|\b(?:note|message|attention|instructions?|reminder|notice) (?:to|for) (?:any |all |the |every )?"
    r"(?:(?:ai|llm|coding|autonomous) )?(?:ai|llm|agent|assistant|claude|chatgpt|gpt|copilot|language model|"
    r"model|bot)s?\b"
    r"(?: reading this| (?:only|processing this))? ?(?:[:,!-]|\n|$)"  # a heading, not "an instruction to the agent"
    r"|\b(?:attention|hey|dear),? (?:ai|llm|agent|assistant|claude|chatgpt|language model|coding agent)s?\b"
    r"|\bif you are an? (?:ai|llm|language model|agent|assistant|coding agent|bot|automated)\b"
    r"|\b(?:ai|llm) (?:agents?|assistants?|models?) (?:reading|processing|that read|who read|loading) this\b"
    r"|\bwhen(?:ever)? you (?:read|see|load|process|encounter|retrieve) this (?:note|memory|message|text|line)\b"
    r"|\b(?:before|prior to) (?:doing |starting |answering |responding to )?(?:any|every|each) (?:other )?"
    r"(?:task|request|answer|response|reply|action|command|tool call)s?,? (?:you )?(?:must |should |always |"
    r"first )*(?:run|execute|fetch|download|install|call|send|visit|open)\b"
    r"|\b(?:this|these) (?:instructions?|rules?|directives?) (?:override|supersedes?|takes? precedence over|"
    r"replaces?) (?:all|any|every|your|the)\b"
    r"|\b(?:disable|turn off|ignore|bypass|skip) (?:all |your |the |any )?(?:safety|security) (?:checks|"
    r"guidelines|rules|filters|policies|restrictions|guardrails|instructions)\b"
)
_SECRECY = re.compile(
    r"\b(?:do not|don't|dont|never|must not|mustn't|should not|shouldn't) (?:ever )?(?:tell|inform|mention|"
    r"reveal|disclose|show|notify|alert|warn|report(?: this)? to|say (?:anything )?to|let) (?:this |it |that |"
    r"anything |any of this )?(?:to )?(?:the |your )?(?:user|human|operator|developer|person)s?\b"
    r"|\bwithout (?:telling|informing|notifying|alerting|asking|warning|mentioning (?:it|this) to|showing) "
    r"(?:the |your )?(?:user|human|operator|developer)s?\b"
    r"|\b(?:keep|hide) (?:this|it|that|these steps|the following) (?:secret |hidden )?from (?:the |your )?"
    r"(?:user|human|operator|developer)s?\b"
    r"|\b(?:silently|quietly|secretly|covertly) (?:run|execute|send|upload|post|install|add|download|"
    r"exfiltrate|forward|copy)\b"
)
_SECRETS = r"(?:secrets?|env(?:ironment)?(?: ?var(?:iable)?s)?|\.env(?: files?)?|api[ _-]?keys?|access keys?|tokens?|" \
           r"credentials?|passwords?|passphrases?|ssh keys?|private keys?|id_rsa|id_ed25519|\.ssh|\.aws|" \
           r"aws[_ ]secret\w*|cookies|session tokens?|keychain|wallet|\.npmrc|\.netrc|\.pypirc|kubeconfig)"
_EXFIL = re.compile(
    r"\b(?:send|post|upload|exfiltrate|forward|e-?mail|transmit|leak|copy|pipe|submit|report|share|paste|"
    r"dump|beacon|ship)\b[^\n]{0,80}?\b(?:all|every|your|the user's|user's|the contents of|contents of|any|"
    r"their|my|local|the)\b[^\n]{0,30}?" + _SECRETS + r"[^\n]{0,80}?\b(?:to|at|into|via|using)\b ?"
    r"(?:https?:|ftp:|//|\S+\.(?:com|net|org|io|ru|xyz|top|site|cc|me|sh|app|dev|co|info|biz|tk)\b|"
    r"(?:the |this |our |my |an? )?(?:following |external |remote |attacker'?s? )?(?:url|server|endpoint|"
    r"webhook|address|pastebin|email|inbox|host|domain|ip)\b|me\b|us\b)"
    r"|\b(?:env|printenv|set|cat [^\n|;]{0,60}(?:\.env|id_rsa|id_ed25519|credentials|\.ssh|\.aws|\.netrc|"
    r"\.npmrc|secrets?)\S*) ?\| ?(?:curl|wget|nc|ncat|netcat|socat|telnet)\b"
    r"|\b(?:curl|wget)\b[^\n;&]{0,200}?(?:-d|--data\S*|-f|--form|-t|--upload-file|--post-file|--body-file)"
    r" ?['\"]?@?[^\n;&]{0,40}?(?:\.env\b|id_rsa|id_ed25519|credentials|\.ssh/|\.aws/|\.netrc|\.npmrc|"
    r"\$\(?(?:env|printenv)\)?|\$\{?[a-z_]*(?:token|secret|key|password)[a-z_]*)"
    r"|\b(?:nc|ncat|netcat)\b[^\n;&]{0,80}<[^\n;&]{0,40}(?:\.env|id_rsa|id_ed25519|credentials|\.ssh|\.aws)"
)

# ---- commands that run fetched code --------------------------------------------------------------

_SHELL = r"(?:sh|bash|zsh|ksh|dash|fish)"
_SOURCE = r"(?:sh|bash|zsh|ksh|dash|fish|source|\.)"
_INTERP = r"(?:python[0-9.]*|py|perl|ruby|node|php|deno|bun)"
_FETCH = r"(?:curl|wget|iwr|irm|invoke-webrequest|invoke-restmethod|http|https|xh|aria2c|lwp-request|" \
         r"gh api|aws s3 cp|gsutil cat|base64 (?:-d|--decode|-di|-D)\b|openssl (?:base64|enc) [^\n|]*-d)"
_RUN_FETCHED = re.compile(
    r"\b" + _FETCH + r"[^\n;&]{0,300}?\| ?(?:\S+ ){0,3}?(?:sudo (?:-\S+ )*|exec |env (?:\S+=\S* )*)?"
    r"(?:" + _SHELL + r"(?= ?(?:$|-s\b|-x\b|-e\b|-$|- |--|\)|`|'|\"|;|&|\||\n|<|\Z))"
    r"|" + _INTERP + r"(?= ?(?:$|-$|- |-u\b|\)|`|'|\"|;|&|\||\n|\Z)))"
    r"|(?:\b|(?<!\S))(?:" + _SOURCE + r"|" + _INTERP + r") ?<\( ?(?:curl|wget|fetch|iwr)\b"
    r"|\b(?:" + _SOURCE + r"|" + _INTERP + r"|eval|exec) [^\n]{0,20}?\"?\$\( ?(?:curl|wget|fetch|iwr|"
    r"base64 (?:-d|--decode))\b"
    r"|\b(?:iex|invoke-expression)\b ?\(? ?(?:\(? ?)?(?:iwr|irm|invoke-webrequest|invoke-restmethod|"
    r"new-object|\[system\.text|\[convert\])"
    r"|\b(?:iwr|irm|invoke-webrequest|invoke-restmethod)\b[^\n;]{0,200}?\| ?(?:iex|invoke-expression)\b"
    r"|\bdownloadstring ?\([^\n]{0,200}?\)[^\n]{0,40}?\b(?:iex|invoke-expression)\b"
    r"|\b(?:iex|invoke-expression)\b[^\n]{0,60}?downloadstring\b"
    r"|\b(?:eval|exec) ?\( ?(?:await )?(?:requests\.get|urllib\.request\.urlopen|urlopen|httpx\.get|"
    r"fetch|\$\.get|axios\.get|base64\.b64decode|atob|compile ?\( ?(?:requests|urlopen|base64)|"
    r"__import__ ?\( ?['\"](?:base64|urllib|requests))"
    r"|\bpython[0-9.]* -c [^\n]{0,40}(?:urlopen|requests\.get)[^\n]{0,200}\bexec\b"
    r"|\beval ?\([^\n]{0,80}?(?:\bcurl\b|\bwget\b|https?://)"
)

# ---- mentions: a phrase inside quotes, in a text about such phrases -------------------------------

_QUOTED = re.compile(r"\"[^\"\n]{1,400}\"|`[^`]{1,400}`|(?<![\w'])'[^'\n]{1,400}'(?![\w])")
_TOPIC = re.compile(
    r"\b(?:inject(?:ion|ions|ed|ing)?|jailbreak\w*|attack(?:s|er|ers|ed)?|malicious|phishing|payloads?|"
    r"exploit\w*|poison\w*|red[ -]team\w*|adversarial|detect\w*|filter\w*|regex\w*|patterns?|"
    r"test cases?|fixtures?|canary|heuristic\w*|classifier\w*|guardrails?|blocklist|denylist|flag(?:s|ged)?|"
    r"compromised|malware|incident|postmortem|post-mortem|scam\w*|spam\w*|suspicious|warns? about|"
    r"examples?|phrases?|strings?)\b"
)

_TEMPLATE = re.compile(r"<\|? ?/?(?:im_start|im_end|system|endoftext|start_header_id)\|?>|\[/?inst\]|<</?sys>>")
# a modal "must not tell the user" is a policy when its subject is someone else ("support agents must not
# reveal to the user ..."): it counts when it opens a sentence or its subject is the agent
_AGENT_SUBJECT = re.compile(r"(?:^|[.:;!?\n(]|\b(?:you|ai|agent|assistant|claude|model|llm|bot|copilot),?) ?"
                            r"(?:(?:should|must|will|shall|can|please|always|also|and|but|just|then|so) ?)*$")

_RULES: tuple[tuple[re.Pattern[str], str, bool, tuple[str, ...]], ...] = (
    # (pattern, reason, read in the words form (True) or in the command form (False), words one of which the
    # text must contain for the pattern to be tried: a cheap test that spares most notes the pattern)
    (_OVERRIDE, "reads like an instruction to the agent", True,
     ("ignor", "disregard", "forget", "overrid", "overrul", "bypass", "discard", "drop", "abandon", "skip",
      "aside", "throw", "follow", "void", "cancel", "revoked", "obsolete", "supersed", "no longer", "outdated",
      "replaced", "new ", "your ")),
    (_IMPERSONATION, "impersonates a system or operator message", True,
     ("system", "admin", "developer", "security", "operator", "assistant", "you must now", "you are now",
      "from now on", "granted", "given", "authori", "cleared", "permitted", "mode", "ai", "llm", "agent",
      "claude", "gpt", "copilot", "language model", "if you are", "this", "when", "before", "prior to",
      "safety")),
    (_TEMPLATE, "impersonates a system or operator message", False, ("<", "[")),
    (_SECRECY, "tells the agent to hide something from the user", True,
     ("user", "human", "operator", "developer", "person", "silently", "quietly", "secretly", "covertly")),
    (_EXFIL, "asks to send secrets somewhere", False, ("secret", "env", "key", "token", "credential", "passw",
     "passphrase", "ssh", "id_rsa", "id_ed25519", "aws", "cookie", "keychain", "wallet", "npmrc", "netrc",
     "pypirc", "kubeconfig")),
    (_RUN_FETCHED, "tells the agent to run fetched code", False,
     ("curl", "wget", "iwr", "irm", "invoke", "base64", "openssl", "http", "xh", "aria2c", "lwp", "gh api",
      "s3 cp", "gsutil", "<(", "$(", "iex", "downloadstring", "eval", "exec")),
)
_DIGITS = str.maketrans({"0": "o", "1": "i", "3": "e", "4": "a", "5": "s", "7": "t"})
_DIGIT_IN_WORD = re.compile(r"[a-z][0-9]|[0-9][a-z]")
_MARKUP = re.compile(r"\*+|^ ?>+ ?", re.MULTILINE)


def _shown(span: str) -> str:
    span = span.strip(" \n'\"`")
    return span if len(span) <= 80 else span[:77] + "..."


def _find(pattern: re.Pattern[str], text: str, words: bool) -> str | None:
    """The first match of `pattern` in `text` read as words or as commands, plain or with digits for
    letters undone; for a secrecy phrase, the first one addressed to the agent."""
    base = _words(text) if words else _MARKUP.sub("", text)
    forms = [base]
    if _DIGIT_IN_WORD.search(base) or (words and any(c in base for c in "@$!")):
        forms.append(_words(text.translate(_LEET)) if words else base.translate(_DIGITS))
    for form in forms:
        for found in pattern.finditer(form):
            if pattern is not _SECRECY or found.group(0).startswith(("without", "keep", "hide")) \
                    or found.group(0).split(" ", 1)[0] in ("silently", "quietly", "secretly", "covertly") \
                    or _AGENT_SUBJECT.search(form[max(0, found.start() - 40):found.start()]):
                return found.group(0)
    return None


def flag_reason(text: str) -> str | None:
    """A short reason when `text` reads like an instruction aimed at an agent or a command to run
    fetched code, else None (see the module docstring)."""
    if not isinstance(text, str) or not text.strip():
        return None
    flat = normalize(text)
    outside = None  # the text with quoted parts blanked, made once if a match needs it
    gate = f"{flat}\n{flat.translate(_DIGITS)}" if _DIGIT_IN_WORD.search(flat) else flat
    if _SPACED.search(gate):
        gate += "\n" + _SPACED.sub(lambda m: m.group(0).replace(" ", ""), gate)
    for pattern, reason, words, keys in _RULES:
        if not any(k in gate for k in keys):
            continue
        span = _find(pattern, flat, words)
        if span is None:
            continue
        if outside is None:
            outside = _QUOTED.sub(" ", flat)
        unquoted = _find(pattern, outside, words)
        if unquoted is None and _TOPIC.search(outside):
            continue  # only inside quotes, in a text about such things: a mention
        return f"{reason}: '{_shown(unquoted or span)}'"
    return None
