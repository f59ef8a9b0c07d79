"""The GraphQL documents: every one the Linear provider can send, kept apart from the code
that sends them so that ``tests/providers/test_linear_schema.py`` can validate each against Linear's
official schema (:data:`DOCUMENTS`). Each issue read carries its labels, relations and
comments inline (the ``TaskIssue`` fragment), so one request usually reads a whole task.
"""

PAGE_SIZE = 50  # issues per page; Linear's default page size
NESTED_PAGE_SIZE = 25  # labels, relations and comments fetched inline per issue
BATCH_SIZE = 25  # issues per issueBatchCreate


_PAGE_INFO = "pageInfo { hasNextPage endCursor }"

ISSUE_FRAGMENT = f"""
fragment TaskIssue on Issue {{
  id
  identifier
  title
  description
  priority
  createdAt
  updatedAt
  archivedAt
  trashed
  team {{ id }}
  project {{ id }}
  state {{ id type }}
  labels(first: {NESTED_PAGE_SIZE}) {{ nodes {{ id name }} {_PAGE_INFO} }}
  inverseRelations(first: {NESTED_PAGE_SIZE}) {{ nodes {{ id type issue {{ id }} }} {_PAGE_INFO} }}
  comments(first: {NESTED_PAGE_SIZE}) {{ nodes {{ id body createdAt user {{ name }} }} {_PAGE_INFO} }}
}}
"""

TEAMS_QUERY = f"""
query Teams($first: Int!, $after: String) {{
  teams(first: $first, after: $after) {{ nodes {{ id name key }} {_PAGE_INFO} }}
}}
"""

TEAM_SETUP_QUERY = f"""
query TeamSetup($teamId: String!, $first: Int!) {{
  team(id: $teamId) {{
    id
    name
    key
    states(first: $first) {{ nodes {{ id name type position }} {_PAGE_INFO} }}
    labels(first: $first) {{ nodes {{ id name }} {_PAGE_INFO} }}
  }}
}}
"""

TEAM_STATES_QUERY = f"""
query TeamStates($teamId: String!, $first: Int!, $after: String) {{
  team(id: $teamId) {{ states(first: $first, after: $after) {{ nodes {{ id name type position }} {_PAGE_INFO} }} }}
}}
"""

TEAM_LABELS_QUERY = f"""
query TeamLabels($teamId: String!, $first: Int!, $after: String) {{
  team(id: $teamId) {{ labels(first: $first, after: $after) {{ nodes {{ id name }} {_PAGE_INFO} }} }}
}}
"""

TEAM_PROJECTS_QUERY = f"""
query TeamProjects($teamId: String!, $first: Int!, $after: String) {{
  team(id: $teamId) {{ projects(first: $first, after: $after) {{ nodes {{ id name }} {_PAGE_INFO} }} }}
}}
"""

ISSUES_QUERY = f"""
query Issues($filter: IssueFilter!, $first: Int!, $after: String, $includeArchived: Boolean!) {{
  issues(filter: $filter, first: $first, after: $after, includeArchived: $includeArchived) {{
    nodes {{ ...TaskIssue }}
    {_PAGE_INFO}
  }}
}}
{ISSUE_FRAGMENT}
"""

ISSUE_QUERY = f"""
query Issue($id: String!) {{
  issue(id: $id) {{ ...TaskIssue }}
}}
{ISSUE_FRAGMENT}
"""

ISSUE_LABELS_PAGE_QUERY = f"""
query IssueLabelsPage($id: String!, $first: Int!, $after: String) {{
  issue(id: $id) {{ labels(first: $first, after: $after) {{ nodes {{ id name }} {_PAGE_INFO} }} }}
}}
"""

ISSUE_RELATIONS_PAGE_QUERY = f"""
query IssueRelationsPage($id: String!, $first: Int!, $after: String) {{
  issue(id: $id) {{
    inverseRelations(first: $first, after: $after) {{ nodes {{ id type issue {{ id }} }} {_PAGE_INFO} }}
  }}
}}
"""

ISSUE_COMMENTS_PAGE_QUERY = f"""
query IssueCommentsPage($id: String!, $first: Int!, $after: String) {{
  issue(id: $id) {{
    comments(first: $first, after: $after) {{ nodes {{ id body createdAt user {{ name }} }} {_PAGE_INFO} }}
  }}
}}
"""

PROJECT_CREATE_MUTATION = """
mutation ProjectCreate($input: ProjectCreateInput!) {
  projectCreate(input: $input) { success project { id name } }
}
"""

LABEL_CREATE_MUTATION = """
mutation LabelCreate($input: IssueLabelCreateInput!) {
  issueLabelCreate(input: $input) { success issueLabel { id name } }
}
"""

ISSUE_BATCH_CREATE_MUTATION = f"""
mutation IssueBatchCreate($input: IssueBatchCreateInput!) {{
  issueBatchCreate(input: $input) {{ success issues {{ ...TaskIssue }} }}
}}
{ISSUE_FRAGMENT}
"""

RELATION_CREATE_MUTATION = """
mutation RelationCreate($input: IssueRelationCreateInput!) {
  issueRelationCreate(input: $input) { success issueRelation { id } }
}
"""

RELATION_DELETE_MUTATION = """
mutation RelationDelete($id: String!) {
  issueRelationDelete(id: $id) { success }
}
"""

ISSUE_UPDATE_MUTATION = f"""
mutation IssueUpdate($id: String!, $input: IssueUpdateInput!) {{
  issueUpdate(id: $id, input: $input) {{ success issue {{ ...TaskIssue }} }}
}}
{ISSUE_FRAGMENT}
"""

# A comment and an issue update in one request: claims, releases, forced takeovers,
# blocking. Mutations run in order, so the issue read back includes the new comment.
COMMENT_AND_UPDATE_MUTATION = f"""
mutation CommentAndUpdate($id: String!, $comment: CommentCreateInput!, $input: IssueUpdateInput!) {{
  commentCreate(input: $comment) {{ success comment {{ id }} }}
  issueUpdate(id: $id, input: $input) {{ success issue {{ ...TaskIssue }} }}
}}
{ISSUE_FRAGMENT}
"""

# Renewal: the claim entry gets the new lease; the description marker mirrors it, which
# also bumps the issue's updatedAt so other workers' incremental polls see the renewal.
RENEW_MUTATION = f"""
mutation Renew($id: String!, $commentId: String!, $comment: CommentUpdateInput!, $input: IssueUpdateInput!) {{
  commentUpdate(id: $commentId, input: $comment) {{ success comment {{ id }} }}
  issueUpdate(id: $id, input: $input) {{ success issue {{ ...TaskIssue }} }}
}}
{ISSUE_FRAGMENT}
"""

COMMENT_CREATE_MUTATION = """
mutation CommentCreate($input: CommentCreateInput!) {
  commentCreate(input: $input) { success comment { id createdAt } }
}
"""

DOCUMENTS: dict[str, str] = {
    name: value
    for name, value in sorted(globals().items())
    if name.endswith(("_QUERY", "_MUTATION")) and isinstance(value, str)
}
