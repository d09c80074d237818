"""The staff interface in Italian and English: a small catalogue keyed by the English text.

The language comes from the ``lang`` cookie (set by the switch in the page header), else
from ``Accept-Language``, else English. A text missing from a catalogue shows in English.
"""

from __future__ import annotations

from collections.abc import Callable

LANGUAGES = ("en", "it")
DEFAULT = "en"
LANG_COOKIE = "canarino_lang"

IT: dict[str, str] = {
    "Overview": "Panoramica",
    "Recipients": "Destinatari",
    "Recipient": "Destinatario",
    "Shares": "Condivisioni",
    "Share": "Condivisione",
    "Trace a leak": "Analizza una fuga",
    "Traces": "Analisi",
    "Incidents": "Incidenti",
    "Incident": "Incidente",
    "Settings": "Impostazioni",
    "Audit log": "Registro di controllo",
    "Users": "Utenti",
    "Sign in": "Accedi",
    "Sign out": "Esci",
    "User name": "Nome utente",
    "Password": "Password",
    "Signed in as": "Accesso come",
    "Language": "Lingua",
    "Skip to content": "Vai al contenuto",
    "Recent sightings": "Avvistamenti recenti",
    "Open incidents": "Incidenti aperti",
    "No incident is open.": "Nessun incidente aperto.",
    "No sighting yet.": "Ancora nessun avvistamento.",
    "No recipient yet.": "Ancora nessun destinatario.",
    "No share yet.": "Ancora nessuna condivisione.",
    "No trace yet.": "Ancora nessuna analisi.",
    "Name": "Nome",
    "Phone": "Telefono",
    "Country": "Paese",
    "Kind": "Tipo",
    "Works for": "Lavora per",
    "When": "Quando",
    "Channel": "Canale",
    "Evidence": "Prova",
    "Expected use": "Uso previsto",
    "Not a canary": "Non monitorato",
    "Fields": "Campi",
    "Rows": "Righe",
    "Customers": "Clienti",
    "Title": "Titolo",
    "Status": "Stato",
    "People": "Persone",
    "People affected": "Persone coinvolte",
    "Next deadline": "Prossima scadenza",
    "Time left": "Tempo rimasto",
    "Due": "Scadenza",
    "Duty": "Obbligo",
    "To": "A",
    "Citation": "Riferimento",
    "overdue": "scaduto",
    "none": "nessuna",
    "Upload a dump": "Carica un dump",
    "File": "File",
    "Archive password (optional)": "Password dell'archivio (facoltativa)",
    "Trace": "Analizza",
    "Tracing": "Analisi in corso",
    "Done": "Fatto",
    "Failed": "Non riuscito",
    "Suspects": "Sospettati",
    "accused": "accusato",
    "not accused": "non accusato",
    "Innocent match chance": "Probabilità di coincidenza per un innocente",
    "Attribution evidence": "Prove di attribuzione",
    "Canaries found per share": "Canarini trovati per condivisione",
    "Time window": "Finestra temporale",
    "Exposed data": "Dati esposti",
    "By country": "Per paese",
    "By data category": "Per categoria di dati",
    "Open an incident": "Apri un incidente",
    "Timeline": "Cronologia",
    "Became aware": "Venuti a conoscenza",
    "Occurred": "Avvenuto",
    "Contained": "Contenuto",
    "Opened": "Aperto",
    "unknown": "sconosciuto",
    "Risk": "Rischio",
    "Record the risk assessment": "Registra la valutazione del rischio",
    "Reason": "Motivo",
    "Save": "Salva",
    "Obligations": "Obblighi",
    "Notices": "Comunicazioni",
    "Prepare notices": "Prepara le comunicazioni",
    "Send notices": "Invia le comunicazioni",
    "SMTP relay (HOST:PORT)": "Relay SMTP (HOST:PORTA)",
    "Use STARTTLS": "Usa STARTTLS",
    "Sending": "Invio in corso",
    "Affected people": "Persone coinvolte",
    "Reveal": "Mostra",
    "Export CSV": "Esporta CSV",
    "Personal data is masked. Revealing it is recorded in the audit log.": (
        "I dati personali sono mascherati. Mostrarli viene registrato nel registro di controllo."
    ),
    "Previous": "Precedenti",
    "Next": "Successivi",
    "of": "di",
    "Monitored mail domains": "Domini di posta monitorati",
    "Monitored phone ranges": "Intervalli telefonici monitorati",
    "Alert e-mail addresses": "Indirizzi e-mail per gli allarmi",
    "Alert webhooks": "Webhook per gli allarmi",
    "Slack webhooks": "Webhook Slack",
    "Add a user": "Aggiungi un utente",
    "Disable": "Disattiva",
    "Revoke": "Revoca",
    "New API token": "Nuovo token API",
    "Copy this token now: it will not be shown again.": "Copia ora questo token: non sarà più mostrato.",
    "API tokens": "Token API",
    "Last used": "Ultimo uso",
    "revoked": "revocato",
    "One per line.": "Uno per riga.",
    "Saved.": "Salvato.",
    "Actor": "Chi",
    "Action": "Azione",
    "Target": "Oggetto",
    "Address": "Indirizzo",
    "Details": "Dettagli",
    "Something went wrong": "Qualcosa non ha funzionato",
    "Back to the overview": "Torna alla panoramica",
    "Role": "Ruolo",
    "Disabled": "Disattivato",
    "Shared on": "Condiviso il",
    "Detection limit": "Soglia di rilevamento",
    "Export SHA-256": "SHA-256 dell'export",
    "Customer filter": "Filtro clienti",
    "all": "tutti",
    "Progress": "Avanzamento",
    "Source": "Origine",
    "Customers matched": "Clienti trovati",
    "Named first": "Primo sospettato",
    "Notices by state": "Comunicazioni per stato",
    "shared": "condivisi",
    "seen": "trovati",
    "Canaries seen": "Canarini trovati",
    "Customers covered": "Clienti coperti",
    "Uncovered jurisdictions: check them by hand.": (
        "Giurisdizioni non coperte: verificarle a mano."
    ),
    "People affected per country": "Persone coinvolte per paese",
    "People affected per data category": "Persone coinvolte per categoria di dati",
    "The page was not found.": "La pagina non esiste.",
}
CATALOGUES: dict[str, dict[str, str]] = {"en": {}, "it": IT}


def negotiate(cookie: str | None, accept_language: str | None) -> str:
    """The interface language: the cookie if valid, else the best ``Accept-Language`` match."""
    if cookie in LANGUAGES:
        return str(cookie)
    ranked: list[tuple[float, int, str]] = []
    for position, part in enumerate((accept_language or "").split(",")):
        tag, _, params = part.strip().partition(";")
        quality = 1.0
        if params.strip().startswith("q="):
            try:
                quality = float(params.strip()[2:])
            except ValueError:
                quality = 0.0
        primary = tag.strip().lower().split("-")[0]
        if primary in LANGUAGES and quality > 0:
            ranked.append((-quality, position, primary))
    return sorted(ranked)[0][2] if ranked else DEFAULT


def translator(language: str) -> Callable[..., str]:
    """A ``t(text, **values)`` function for ``language``."""
    catalogue = CATALOGUES.get(language, {})

    def t(text: str, **values: object) -> str:
        out = catalogue.get(text, text)
        return out.format(**values) if values else out

    return t
