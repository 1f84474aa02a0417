// The console's only script (no inline script: CSP script-src 'self'): ask before a
// destructive change. The forms work without it; the server checks every change.
"use strict";
document.addEventListener("submit", (event) => {
  const button = event.submitter;
  const question = button && button.getAttribute("data-confirm");
  if (question && !window.confirm(question)) {
    event.preventDefault();
  }
});
