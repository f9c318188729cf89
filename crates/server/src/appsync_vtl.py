"""Renders an AppSync response mapping template (VTL) for the tests of appsync_errors.rs.

Reads {"template": "...", "contexts": [{"result": ..., "error": ...}, ...]} on stdin and
writes one outcome per context on stdout: {"data": <the field's value>} or {"error":
{"message", "errorType", "data", "errorInfo"}}, the GraphQL error AppSync makes of
$util.error(message, errorType, data, errorInfo), which ends the template
(https://docs.aws.amazon.com/appsync/latest/devguide/utility-helpers-in-util.html).
Velocity is airspeed's (PyPI, installed into .venv by scripts/test); only the helpers the
template uses exist here, so a template that uses another one fails the test.
"""

import json
import sys

import airspeed


class Raised(Exception):
    def __init__(self, error):
        super().__init__(error["message"])
        self.error = error


class Util:
    def error(self, message, error_type=None, data=None, error_info=None):
        raise Raised(
            {"message": message, "errorType": error_type, "data": data, "errorInfo": error_info}
        )

    def toJson(self, value):  # noqa: N802 (AppSync's name)
        return json.dumps(value)


def render(template, ctx):
    try:
        text = airspeed.Template(template).merge({"ctx": ctx, "util": Util()})
    except airspeed.TemplateExecutionError as e:
        if isinstance(e.__cause__, Raised):
            return {"error": e.__cause__.error}
        raise
    return {"data": json.loads(text)}


def main():
    request = json.load(sys.stdin)
    contexts = [{"result": c.get("result"), "error": c.get("error")} for c in request["contexts"]]
    json.dump([render(request["template"], ctx) for ctx in contexts], sys.stdout)


if __name__ == "__main__":
    main()
