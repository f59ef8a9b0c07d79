"""What the Linear provider sends, and what the fake answers to, match Linear's official schema.

The schema is the vendored subset ``tests/fixtures/linear/schema-subset.graphql`` of Linear's
SDL (linear/linear repository; see tests/fixtures/README.md), so these tests run in any
clone; tests/test_fixtures.py checks the subset against the full file when it is there.
"""

from __future__ import annotations

from pathlib import Path

import graphql
import pytest

from autonomous.providers import linear
from autonomous.providers.linear.client import operation_name
from autonomous.testing import fake_linear

SCHEMA_PATH = Path(__file__).resolve().parents[1] / "fixtures" / "linear" / "schema-subset.graphql"


@pytest.fixture(scope="session")
def official() -> graphql.GraphQLSchema:
    return graphql.build_schema(SCHEMA_PATH.read_text())


@pytest.fixture(scope="session")
def subset() -> graphql.GraphQLSchema:
    return graphql.build_schema(fake_linear.SCHEMA_SDL)


def test_the_provider_lists_its_documents():
    assert len(linear.DOCUMENTS) >= 18
    assert {"ISSUES_QUERY", "COMMENT_AND_UPDATE_MUTATION", "ISSUE_BATCH_CREATE_MUTATION"} <= set(linear.DOCUMENTS)
    names = [operation_name(doc) for doc in linear.DOCUMENTS.values()]
    assert len(set(names)) == len(names), "operation names are how requests are counted: keep them unique"


@pytest.mark.parametrize("name", sorted(linear.DOCUMENTS))
def test_every_document_is_valid_against_the_official_schema(official, name):
    errors = graphql.validate(official, graphql.parse(linear.DOCUMENTS[name]))
    assert errors == [], [e.message for e in errors]


@pytest.mark.parametrize("name", sorted(linear.DOCUMENTS))
def test_the_fake_accepts_every_document(subset, name):
    errors = graphql.validate(subset, graphql.parse(linear.DOCUMENTS[name]))
    assert errors == [], [e.message for e in errors]


def _user_types(schema: graphql.GraphQLSchema) -> dict[str, graphql.GraphQLNamedType]:
    return {
        name: t
        for name, t in schema.type_map.items()
        if not name.startswith("__") and name not in graphql.specified_scalar_types
    }


def test_the_fakes_schema_is_a_subset_of_the_official_one(official, subset):
    problems = []
    for name, mine in _user_types(subset).items():
        theirs = official.type_map.get(name)
        if theirs is None:
            problems.append(f"type {name} does not exist")
            continue
        if type(theirs) is not type(mine):
            problems.append(f"{name} is a {type(mine).__name__} here, a {type(theirs).__name__} in Linear")
            continue
        if isinstance(mine, graphql.GraphQLEnumType):
            problems += [f"enum value {name}.{v} does not exist" for v in mine.values if v not in theirs.values]
        if not isinstance(mine, graphql.GraphQLObjectType | graphql.GraphQLInputObjectType):
            continue
        for field_name, field in mine.fields.items():
            other = theirs.fields.get(field_name)
            if other is None:
                problems.append(f"{name}.{field_name} does not exist")
                continue
            if str(field.type) != str(other.type):
                problems.append(f"{name}.{field_name} is {field.type} here, {other.type} in Linear")
            for arg_name, arg in getattr(field, "args", {}).items():
                other_arg = other.args.get(arg_name)
                if other_arg is None:
                    problems.append(f"{name}.{field_name}({arg_name}:) does not exist")
                elif str(arg.type) != str(other_arg.type):
                    problems.append(f"{name}.{field_name}({arg_name}:) is {arg.type} here, {other_arg.type} in Linear")
    assert problems == []


def test_required_input_fields_of_linear_are_required_in_the_fake_too(official, subset):
    """An input the fake accepts must not lack a field Linear requires."""
    problems = []
    for name, mine in _user_types(subset).items():
        if not isinstance(mine, graphql.GraphQLInputObjectType):
            continue
        for field_name, field in official.type_map[name].fields.items():
            required = isinstance(field.type, graphql.GraphQLNonNull) and field.default_value is graphql.Undefined
            if required and field_name not in mine.fields:
                problems.append(f"{name}.{field_name} is required by Linear but unknown to the fake")
    assert problems == []
