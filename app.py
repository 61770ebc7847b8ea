"""`streamlit run app.py` from a checkout. The app lives in the package (wiseft_explorer/ui/app/), so that an
installed copy runs the same code: `wiseft-explorer app`."""

from wiseft_explorer.ui.app.main import main

main()
