"""The runner's checks beyond running commands: which test command a project has
(:mod:`.detect`), the baseline before the first task (:mod:`.baseline`), the task's diff
(:mod:`.diff`) and the independent review (:mod:`.review`). :mod:`autonomous.verify`
puts them together."""
