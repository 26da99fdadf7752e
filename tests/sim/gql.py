"""Minimal GraphQL document reader for the platform simulator.

Not a validating GraphQL implementation: it tokenises a document, reads the first
operation (query or mutation), its root fields with aliases, arguments, directives and
nested selections, resolves fragment spreads, and evaluates argument values against
the request variables. That is enough to recognise what a client asks for, read its
arguments wherever they are written (inline literals or $variables) and compute the
documented query cost. Standard library only.
"""

import re

_PUNCT = set("!$():=@[]{}|&")
_TOKEN_RE = re.compile(
    r'(?P<ws>[\s,\ufeff]+)|(?P<comment>#[^\n\r]*)|(?P<spread>\.\.\.)'
    r'|(?P<block>"""(?:\\"""|[^"]|"(?!""))*""")'
    r'|(?P<str>"(?:\\.|[^"\\\n])*")'
    r'|(?P<num>-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)'
    r'|(?P<name>[_A-Za-z][_0-9A-Za-z]*)'
    r'|(?P<punct>[!$():=@\[\]{}|&])'
)


class GqlError(Exception):
    """A document the simulator cannot read (answered like a GraphQL syntax error)."""


class Field:
    """One selected field: alias, name, arguments (value ASTs), directives, selections."""

    __slots__ = ("alias", "name", "args", "directives", "selections")

    def __init__(self, alias, name, args, directives, selections):
        self.alias = alias
        self.name = name
        self.args = args
        self.directives = directives
        self.selections = selections

    @property
    def key(self):
        return self.alias or self.name

    def child(self, name):
        """First direct child field called name (after fragment expansion), or None."""
        for f in self.selections:
            if f.name == name:
                return f
        return None


def _tokenise(text):
    out = []
    pos = 0
    n = len(text)
    while pos < n:
        m = _TOKEN_RE.match(text, pos)
        if not m:
            raise GqlError("Syntax error: unexpected character %r at %d" % (text[pos], pos))
        pos = m.end()
        kind = m.lastgroup
        if kind in ("ws", "comment"):
            continue
        if kind == "block":
            out.append(("str", m.group()[3:-3]))
        elif kind == "str":
            out.append(("str", _unescape(m.group()[1:-1])))
        else:
            out.append((kind, m.group()))
    out.append(("eof", ""))
    return out


def _unescape(s):
    if "\\" not in s:
        return s
    res = []
    i = 0
    while i < len(s):
        c = s[i]
        if c == "\\" and i + 1 < len(s):
            e = s[i + 1]
            if e == "u" and i + 5 < len(s):
                res.append(chr(int(s[i + 2:i + 6], 16)))
                i += 6
                continue
            res.append({"n": "\n", "t": "\t", "r": "\r", "b": "\b", "f": "\f"}.get(e, e))
            i += 2
            continue
        res.append(c)
        i += 1
    return "".join(res)


class _Parser:
    def __init__(self, text):
        self.toks = _tokenise(text)
        self.i = 0
        self.fragments = {}

    def peek(self, k=0):
        return self.toks[self.i + k]

    def take(self, kind=None, value=None):
        tok = self.toks[self.i]
        if kind is not None and tok[0] != kind:
            raise GqlError("Syntax error: expected %s, got %r" % (kind, tok[1]))
        if value is not None and tok[1] != value:
            raise GqlError("Syntax error: expected %r, got %r" % (value, tok[1]))
        self.i += 1
        return tok

    def at(self, value):
        return self.toks[self.i][1] == value and self.toks[self.i][0] in ("punct", "spread")

    def skip_balanced(self, open_, close):
        depth = 0
        while True:
            tok = self.take()
            if tok[0] == "eof":
                raise GqlError("Syntax error: unbalanced %s" % open_)
            if tok[0] == "punct" and tok[1] == open_:
                depth += 1
            elif tok[0] == "punct" and tok[1] == close:
                depth -= 1
                if depth == 0:
                    return

    def document(self):
        ops = []
        while self.peek()[0] != "eof":
            tok = self.peek()
            if tok[0] == "punct" and tok[1] == "{":
                ops.append(("query", self.selection_set()))
            elif tok[0] == "name" and tok[1] in ("query", "mutation", "subscription"):
                self.take()
                if self.peek()[0] == "name":
                    self.take()
                if self.at("("):
                    self.skip_balanced("(", ")")
                self.directives()
                ops.append((tok[1], self.selection_set()))
            elif tok[0] == "name" and tok[1] == "fragment":
                self.take()
                name = self.take("name")[1]
                self.take("name", "on")
                self.take("name")
                self.directives()
                self.fragments[name] = self.selection_set()
            else:
                raise GqlError("Syntax error: unexpected %r" % (tok[1],))
        if not ops:
            raise GqlError("No operation in document")
        return ops

    def selection_set(self):
        self.take("punct", "{")
        sels = []
        while not self.at("}"):
            if self.peek()[0] == "eof":
                raise GqlError("Syntax error: unterminated selection set")
            if self.peek()[0] == "spread":
                self.take()
                if self.peek()[0] == "name" and self.peek()[1] == "on":
                    self.take()
                    self.take("name")
                    self.directives()
                    sels.extend(self.selection_set())
                elif self.at("{") or self.at("@"):
                    self.directives()
                    sels.extend(self.selection_set())
                else:
                    name = self.take("name")[1]
                    self.directives()
                    sels.append(("spread", name))
                continue
            name = self.take("name")[1]
            alias = None
            if self.at(":"):
                self.take()
                alias = name
                name = self.take("name")[1]
            args = self.arguments() if self.at("(") else {}
            dirs = self.directives()
            subs = self.selection_set() if self.at("{") else []
            sels.append(Field(alias, name, args, dirs, subs))
        self.take("punct", "}")
        return sels

    def arguments(self):
        self.take("punct", "(")
        args = {}
        while not self.at(")"):
            name = self.take("name")[1]
            self.take("punct", ":")
            args[name] = self.value()
        self.take("punct", ")")
        return args

    def directives(self):
        dirs = []
        while self.at("@"):
            self.take()
            name = self.take("name")[1]
            dirs.append((name, self.arguments() if self.at("(") else {}))
        return dirs

    def value(self):
        tok = self.take()
        kind, text = tok
        if kind == "punct" and text == "$":
            return ("var", self.take("name")[1])
        if kind == "str":
            return ("lit", text)
        if kind == "num":
            if re.fullmatch(r"-?\d+", text):
                return ("lit", int(text))
            return ("lit", float(text))
        if kind == "name":
            if text == "true":
                return ("lit", True)
            if text == "false":
                return ("lit", False)
            if text == "null":
                return ("lit", None)
            return ("lit", text)  # enum value, kept as its name
        if kind == "punct" and text == "[":
            items = []
            while not self.at("]"):
                items.append(self.value())
            self.take()
            return ("list", items)
        if kind == "punct" and text == "{":
            obj = {}
            while not self.at("}"):
                k = self.take("name")[1]
                self.take("punct", ":")
                obj[k] = self.value()
            self.take()
            return ("obj", obj)
        raise GqlError("Syntax error: unexpected %r in value" % (text,))


def _expand(sels, fragments, depth=0):
    if depth > 20:
        raise GqlError("Fragment recursion too deep")
    out = []
    for s in sels:
        if isinstance(s, tuple):
            frag = fragments.get(s[1])
            if frag is None:
                raise GqlError("Fragment %s was used, but not defined" % s[1])
            out.extend(_expand(frag, fragments, depth + 1))
        else:
            s.selections = _expand(s.selections, fragments, depth + 1)
            out.append(s)
    return out


def parse(text):
    """Parse a document; returns (operation_type, [root Field]) of its first operation."""
    if not isinstance(text, str) or not text.strip():
        raise GqlError("No query string was present")
    p = _Parser(text)
    ops = p.document()
    op_type, sels = ops[0]
    return op_type, _expand(sels, p.fragments)


def evaluate(value, variables):
    """Turn a value AST into Python data, substituting variables (missing -> None)."""
    kind, v = value
    if kind == "lit":
        return v
    if kind == "var":
        return (variables or {}).get(v)
    if kind == "list":
        return [evaluate(x, variables) for x in v]
    if kind == "obj":
        return {k: evaluate(x, variables) for k, x in v.items()}
    return None


def arg(field, name, variables, default=None):
    """Evaluated argument name of field, or default when absent or null."""
    if name not in field.args:
        return default
    val = evaluate(field.args[name], variables)
    return default if val is None else val


def directive_arg(field, directive, name, variables):
    """Argument name of directive @directive on field, or None."""
    for dname, dargs in field.directives:
        if dname == directive and name in dargs:
            return evaluate(dargs[name], variables)
    return None


# ---------------------------------------------------------------- cost (shopify.dev rules)
# Scalar/enum 0, object 1, connection 2 + first/last x (cost of one node), mutation 10.

def _node_fields(field):
    out = []
    for s in field.selections:
        if s.name == "edges":
            for e in s.selections:
                if e.name == "node":
                    out.extend(e.selections)
        elif s.name == "nodes":
            out.extend(s.selections)
    return out


def _is_connection(field, variables):
    return ("first" in field.args or "last" in field.args) and (
        field.child("edges") is not None or field.child("nodes") is not None)


def requested_cost(fields, variables):
    total = 0
    for f in fields:
        if not f.selections or f.name in ("pageInfo", "userErrors"):
            continue
        if _is_connection(f, variables):
            n = arg(f, "first", variables) or arg(f, "last", variables) or 0
            try:
                n = int(n)
            except (TypeError, ValueError):
                n = 0
            total += 2 + n * (1 + requested_cost(_node_fields(f), variables))
        else:
            total += 1 + requested_cost(f.selections, variables)
    return total


def actual_cost(fields, parent, variables):
    total = 0
    for f in fields:
        if not f.selections or f.name in ("pageInfo", "userErrors"):
            continue
        val = parent.get(f.key) if isinstance(parent, dict) else None
        if _is_connection(f, variables):
            items = []
            if isinstance(val, dict):
                if isinstance(val.get("edges"), list):
                    items = [e.get("node") for e in val["edges"]]
                elif isinstance(val.get("nodes"), list):
                    items = val["nodes"]
            total += 2 + sum(1 + actual_cost(_node_fields(f), it, variables) for it in items)
        elif isinstance(val, list):
            total += sum(1 + actual_cost(f.selections, it, variables) for it in val)
        elif val is not None:
            total += 1 + actual_cost(f.selections, val, variables)
    return total
