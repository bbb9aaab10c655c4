"""The organiser's side: every team's submission linted, run in a sandbox, budgeted, timed, replayed and ranked."""
