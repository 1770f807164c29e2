"""Run inside the SAM CLI's venv: expand AWS::LanguageExtensions for the given parameter values, then
the real SAM translator, and print what the API's routes require (JSON on stdout).

`sam validate --lint` runs cfn-lint only; this is the translation CloudFormation runs at deploy."""

import copy
import json
import sys

from samcli.lib.cfn_language_extensions.api import process_template
from samtranslator.public.exceptions import InvalidDocumentException
from samtranslator.translator.transform import transform
from samtranslator.yaml_helper import yaml_parse


class _NoManagedPolicies:
    def load(self) -> dict:
        return {}


def main() -> None:
    with open(sys.argv[1]) as handle:
        template = yaml_parse(handle.read())
    parameters = json.loads(sys.argv[2])
    expanded = process_template(copy.deepcopy(template), parameter_values=parameters)
    expanded["Transform"] = "AWS::Serverless-2016-10-31"
    for name, resource in expanded["Resources"].items():  # what `sam package` would have uploaded
        props = resource.get("Properties", {})
        for key in ("CodeUri", "ContentUri"):
            if key in props:
                props[key] = f"s3://bucket/{name}.zip"
        if "DefinitionUri" in props:
            props["DefinitionUri"] = f"s3://bucket/{name}.json"
    try:
        translated = transform(expanded, parameters, _NoManagedPolicies())
    except InvalidDocumentException as err:
        print(json.dumps({"ok": False, "errors": [str(c) for c in err.causes]}))
        return
    body = translated["Resources"]["Api"]["Properties"]["Body"]
    security = {
        f"{method.upper()} {path}": operation.get("security")
        for path, operations in body["paths"].items()
        for method, operation in operations.items()
        if isinstance(operation, dict)
    }
    print(json.dumps({"ok": True, "security": security}))


if __name__ == "__main__":
    main()
