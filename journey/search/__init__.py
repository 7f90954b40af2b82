"""Tree search: the reasoning tree (`tree`) and its lockstep w/D/top-K expansion (`build`)."""
