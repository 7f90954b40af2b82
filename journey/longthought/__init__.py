"""Long thought from trees: shortcut and journey paths (`paths`), rendering (`render`), rewrite (`rewrite`)."""
