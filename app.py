"""`streamlit run app.py` from a checkout. The app lives in the package (wiseft_explorer/ui/app/), so that an
installed copy runs the same code: `wiseft-explorer app`.

Nothing runs unless this file is the script Streamlit runs (`__main__`): image-loader workers (multiprocessing's
forkserver) run the main script again as `__mp_main__` before their first batch, and each one imported Streamlit and
every page (0.6 s) and filled the server's log with "missing ScriptRunContext" warnings."""

if __name__ == "__main__":
    from wiseft_explorer.ui.app.main import main

    main()
