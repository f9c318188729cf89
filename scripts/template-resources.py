"""Counts the resources template.yaml deploys: SAM's transform applied, offline.

CloudFormation allows 500 resources in a stack; every resolver costs nine (function, role,
version, alias, deployment group, data source, resolver, two alarms). scripts/check-deploy
runs this and fails past BUDGET, which leaves room to split the stack before AWS refuses it.

    .venv/bin/python scripts/template-resources.py [template.yaml] [--budget N]
"""

import argparse
import collections
import logging
import os
import sys

from samcli.yamlhelper import yaml_parse
from samtranslator.parser import parser
from samtranslator.translator.translator import Translator

BUDGET = 450


def main():
    args = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    args.add_argument("template", nargs="?", default="template.yaml")
    args.add_argument("--budget", type=int, default=BUDGET)
    options = args.parse_args()
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    logging.getLogger("samtranslator").setLevel(logging.ERROR)
    with open(options.template) as f:
        template = yaml_parse(f.read())
    for resource in template["Resources"].values():
        if resource.get("Type") == "AWS::Serverless::Function":
            # What `sam package` puts there; the transform wants an S3 location.
            resource["Properties"]["CodeUri"] = "s3://bucket/function.zip"
    # Managed policies are looked up by name only when a template names one; it does not.
    translated = Translator({}, parser.Parser()).translate(
        template, parameter_values={}, get_managed_policy_map=lambda: {}
    )
    resources = translated["Resources"]
    kinds = collections.Counter(r["Type"] for r in resources.values())
    print(f"{len(resources)} resources (budget {options.budget}, CloudFormation's limit 500)")
    for kind, count in kinds.most_common():
        print(f"  {count:4}  {kind}")
    if len(resources) > options.budget:
        print(
            f"template-resources: {len(resources)} is over the budget of {options.budget}",
            file=sys.stderr,
        )
        sys.exit(1)


if __name__ == "__main__":
    main()
