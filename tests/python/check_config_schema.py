"""Validates TOML config files, and the TOML blocks of Markdown files, against the JSON Schema
that `authd config-schema` prints, with `jsonschema` (an implementation independent of authd).

    check_config_schema.py SCHEMA.json FILE...

A `.toml` file is a whole config. In a `.md` file, every ```toml block is read with tomllib:
- a block with `version` is a whole config;
- a block without it is a fragment of one: it is validated as a document holding only the
  tables it shows (`version = 1` added), so every key it writes must exist with the right
  type, while keys it leaves out are not asked for; a strategy table without `type` is taken
  to be of the type its name names (`[resources.user.strategies.password.resettable]` is the
  password strategy's), as in the README's examples;
- a block of bare keys that belong to no top-level table (`sender = { ... }`) is validated
  key by key against the schema's definition of that key (`sender`: the sender table).
Prints one line per problem (the TOML path and jsonschema's message) and exits 1 if any.
"""

import json
import re
import sys
import tomllib

from jsonschema import Draft202012Validator

TOP_LEVEL = {"version", "server", "store", "tokens", "admin", "introspection", "pages", "metrics", "log", "events", "resources"}
# Bare keys of a fragment -> the schema definition they are validated against.
BARE = {"sender": "SenderSpec", "request_limit": "RequestLimitSetting"}


def path_of(error):
    return ".".join(str(p) for p in error.absolute_path) or "(top)"


def drop_required_top(schema):
    """The schema of a fragment: nothing required at the top."""
    schema = dict(schema)
    schema.pop("required", None)
    return schema


def fill_strategy_types(doc, types):
    for resource in (doc.get("resources") or {}).values():
        if not isinstance(resource, dict):
            continue
        for name, table in (resource.get("strategies") or {}).items():
            if isinstance(table, dict) and "type" not in table and name in types:
                table["type"] = name


def main():
    schema = json.load(open(sys.argv[1]))
    whole = Draft202012Validator(schema)
    fragment = Draft202012Validator(drop_required_top(schema))
    types = set(schema["$defs"]["strategy"]["properties"]["type"]["enum"])
    problems = []

    def check(label, doc):
        if "version" in doc:
            validator = whole
        elif set(doc) <= TOP_LEVEL:
            doc = dict(doc, version=1)
            fill_strategy_types(doc, types)
            validator = fragment
        else:
            for key, value in doc.items():
                if key not in BARE:
                    problems.append(f"{label}: {key}: not a key of any table the checker knows")
                    continue
                sub = dict(schema, **{"$ref": f"#/$defs/{BARE[key]}"})
                for k in ("properties", "required", "additionalProperties", "type"):
                    sub.pop(k, None)
                for e in Draft202012Validator(sub).iter_errors(value):
                    problems.append(f"{label}: {key}.{path_of(e)}: {e.message}")
            return
        for e in sorted(validator.iter_errors(doc), key=lambda e: list(e.absolute_path)):
            problems.append(f"{label}: {path_of(e)}: {e.message}")

    for name in sys.argv[2:]:
        text = open(name).read()
        if name.endswith(".md"):
            blocks = re.findall(r"^```toml\n(.*?)^```", text, re.S | re.M)
            for i, block in enumerate(blocks):
                line = text[: text.find(block)].count("\n") + 1
                try:
                    doc = tomllib.loads(block)
                except tomllib.TOMLDecodeError as e:
                    problems.append(f"{name}:{line}: TOML: {e}")
                    continue
                check(f"{name}:{line}", doc)
            print(f"{name}: {len(blocks)} blocks")
        else:
            check(name, tomllib.loads(text))
            print(f"{name}: checked")
    for p in problems:
        print(p)
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
