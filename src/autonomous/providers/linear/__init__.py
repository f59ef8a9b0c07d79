"""Tasks as Linear issues (``state_provider.type: linear``), over Linear's GraphQL API.

Setup: a personal API key in ``$LINEAR_API_KEY`` (or the variable ``api_key_env`` names),
sent as ``Authorization: <key>`` (personal keys take no ``Bearer``). ``team_id`` is
optional when the key sees exactly one team; ``project_name`` scopes the tasks to a
project, created on first use. Without a project every issue of the team is a task.

Mapping (one place each; see docs/providers.md for the table):

* **Status by workflow-state type, never by name**: ``triage``/``backlog``/``unstarted``
  read as todo, ``started`` as in_progress, ``completed`` as done, ``canceled`` as
  canceled. Writing picks the team's first state (by position) of the type (todo prefers
  ``unstarted``). ``blocked`` has no state type in Linear: it is the ``blocked`` label (on
  an unstarted state) plus a comment; done and canceled win over a stale label.
  ``in_review`` is the team's first ``started`` state whose name says "review" ("In
  Review"), when it has one; otherwise the ``in-review`` label on a started state.
* **Priority**: 1 urgent, 2 high, 3 normal (Linear's "medium"), 4 low; 0 ("no priority")
  reads as low, so unprioritised issues sort last.
* **Description**: the task's description, then ``## Acceptance criteria`` and
  ``## Test steps`` Markdown sections, then one hidden HTML comment
  ``<!-- autonomous {...} -->`` with the stable key, creation time, dependency order and the
  cost and turns spent. An issue whose marker a person's edit removed keeps working: its
  key is derived from the title again (what it was made from in the first place).
* **Dependencies** are ``blocks`` relations (the dependency blocks the dependant);
  **notes** are comments; **META** is an issue with the ``meta`` label.
* **Sessions** are kept in a local JSON file next to the runner's state: they are the
  runner's bookkeeping, not the team's, and cost no requests.

Claims and fencing (Linear has no transactions, so this is an approximation):

* The claim log is the issue's comments. A claim posts an entry
  ``autonomous:claim token=`N` worker=`w` until=`t` nonce=`x``` and moves the issue to
  a started state, *in one request*; the same request's answer re-reads the comments
  (mutations run in order), and the claimer wins when its entry is the **earliest entry
  with the highest token** (comments ordered by ``createdAt``, then id). A later claimer
  sees the earlier entry and backs off with :class:`ClaimConflict`, reverting nothing (its
  losing entry stays as a harmless record; the state was moved to started by the winner
  too). Release and forced takeover post an entry (``released`` / ``fence``) that ends the
  claim; tokens are the highest token in the log plus one, so they only grow.
* **Race window**: the rule gives exactly one winner when Linear's ``createdAt`` order is
  its commit order. Two claims whose writes are in flight at the same instant (their
  comments committed out of ``createdAt`` order, or in the same millisecond with ids in
  the other order) can both read themselves as winners. The window is the duration of one
  write (milliseconds); it closes at the losing worker's next write, which re-reads the log,
  finds the other entry earlier and raises :class:`StaleClaim` (this process remembers
  the nonce of each claim it made, so a token shared by two entries is told apart).
* **Fencing**: every write under a claim re-reads the issue and checks the token (one
  read, one write). The remaining window is between that read and the write: a lease
  that expires exactly then and is taken over can still receive one write from the old
  holder. Leases are minutes long and renewed well before they lapse, so this needs a
  worker stalled past its lease in the middle of a write.
* ``claim_next`` claims from the poll it just made (milliseconds old) instead of reading
  the issue again; everything else reads fresh before it writes.

Request economy: team, workflow states, labels and project are read once per provider;
listing after the first time fetches only issues updated since the last poll (an
``updatedAt`` filter; a full listing every ``full_refresh_every`` polls catches changes
that do not touch the issue, like a person's comment); every state change is one
``issueUpdate`` carrying state, description marker and labels; every connection is
paged (``first``/``after``/``pageInfo``). ``requests`` counts HTTP requests made.

Errors: a missing key variable, a refused key (HTTP 401/403, ``AUTHENTICATION_ERROR``,
``FORBIDDEN``) raise :class:`ProviderAuthError` naming the variable. A rate limit (Linear
answers HTTP 400 with ``extensions.code == "RATELIMITED"``, not 429) waits until the
``X-RateLimit-*-Reset`` time, at most ``max_rate_limit_wait`` seconds in all; network
errors, timeouts, 5xx and ``INTERNAL_SERVER_ERROR`` are retried with backoff; validation
errors never are. Creates carry client-chosen ids, so a retried create cannot duplicate.
"""

from autonomous.errors import LinearGraphQLError
from autonomous.providers.linear.codec import entry_body, parse_description, render_description
from autonomous.providers.linear.provider import LinearProvider
from autonomous.providers.linear.queries import DOCUMENTS

__all__ = ["DOCUMENTS", "LinearGraphQLError", "LinearProvider", "entry_body", "parse_description", "render_description"]
