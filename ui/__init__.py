"""ModelDeck's Gradio tabs: thin adapters over ``pipelines``, one module per tab."""
