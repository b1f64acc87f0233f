"""Validates recorded REST answers against docs/openapi.yaml (OpenAPI 3.1, JSON Schema 2020-12).

Usage: python openapi_check.py <openapi.yaml> <samples.json>
samples.json: [{"method": "post", "path": "/push", "status": 200,
                "content_type": "application/json", "body": <parsed JSON or text>}, ...]
where `path` is the spec's path template. Prints one line per problem; exits 1 if any.
"""
import json
import sys

import jsonschema
import yaml
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

spec = yaml.safe_load(open(sys.argv[1]))
samples = json.load(open(sys.argv[2]))
registry = Registry().with_resource("urn:spec", Resource.from_contents(spec, default_specification=DRAFT202012))
jsonschema.validators.Draft202012Validator.check_schema({"$ref": "urn:spec#/components/schemas/Message"})


def deref(node):
    while isinstance(node, dict) and "$ref" in node:
        ref = node["$ref"]
        assert ref.startswith("#/"), ref
        node = spec
        for part in ref[2:].split("/"):
            node = node[part]
    return node


def rebase(schema):
    """Points the schema's local refs at the whole spec."""
    if isinstance(schema, dict):
        return {k: ("urn:spec" + v if k == "$ref" and v.startswith("#/") else rebase(v)) for k, v in schema.items()}
    if isinstance(schema, list):
        return [rebase(v) for v in schema]
    return schema


problems = []
for s in samples:
    where = "%s %s %s" % (s["method"].upper(), s["path"], s["status"])
    op = spec["paths"].get(s["path"], {}).get(s["method"])
    if op is None:
        problems.append("%s: not in the spec" % where)
        continue
    response = deref(op["responses"].get(str(s["status"])))
    if response is None:
        problems.append("%s: status not documented" % where)
        continue
    content = response.get("content", {})
    ctype = s["content_type"].split(";")[0].strip()
    if ctype not in content:
        problems.append("%s: content type %s not documented (%s)" % (where, ctype, list(content)))
        continue
    schema = rebase(content[ctype]["schema"])
    validator = jsonschema.validators.Draft202012Validator(schema, registry=registry)
    for error in validator.iter_errors(s["body"]):
        problems.append("%s: %s at %s" % (where, error.message, list(error.absolute_path)))

for p in problems:
    print(p)
print("%d samples, %d problems" % (len(samples), len(problems)))
sys.exit(1 if problems else 0)
