"""Configuration: one strict TOML file plus ``GATEWAY_*`` variables, one module per section.

``root`` holds :class:`~gateway.config.root.GatewayConfig`, its cross-field rules and
``load_config``; ``base`` the strict base model and secret references; ``site``, ``doors``,
``cameras``, ``readers``, ``face``, ``mqtt`` and ``privacy`` the sections; ``loading`` where
the values come from; ``settings`` the one translation into domain settings; ``reference``
the generated Markdown reference. Importers name the module
(``from gateway.config.root import ...``).
"""
