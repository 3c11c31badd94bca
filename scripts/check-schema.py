#!/usr/bin/env python3
"""Check the JSON Schema the way an editor would use it: every shipped pipeline must pass it,
and a misspelt option must not."""
import glob
import json
import sys
import tomllib

import jsonschema

schema = json.load(open("schemas/pipeline.schema.json", encoding="utf-8"))
validator = jsonschema.Draft202012Validator(schema)
failed = False
for path in sorted(glob.glob("pipelines/**/*.toml", recursive=True)):
    with open(path, "rb") as file:
        errors = [e.message for e in validator.iter_errors(tomllib.load(file))]
    if errors:
        failed = True
        print(f"{path}: the schema rejects a shipped pipeline: {errors[:3]}")
typo = tomllib.loads('[sources.f1]\ntype = "openf1"\nsession_key = 1\nsped = 2\n'
                     '[sinks.out]\ntype = "console"\ninputs = ["f1"]\n')
if not list(validator.iter_errors(typo)):
    failed = True
    print("the schema accepts an unknown option")
sys.exit(1 if failed else 0)
