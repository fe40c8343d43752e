// Small behaviours kept out of the HTML so a strict Content-Security-Policy can forbid inline scripts.
document.addEventListener("change", (event) => {
  if (event.target.matches("select[data-autosubmit]")) event.target.form.submit();
});

// Where the keyboard starts on a form page: after a failed save, on the first field in error
// (its aria-describedby reads the message out), or on the form's own error when no field is to
// blame; with no error, on the field a link names in its fragment (#id_<field>, e.g. the
// worklist's "Fix" links), so a nurse starts typing where the query points.
function focusOnArrival() {
  const form = document.querySelector("form[data-has-errors]");
  if (form) {
    const target =
      form.querySelector("[aria-invalid='true']:not([type='hidden'])") ||
      form.querySelector("#form-errors");
    if (target) {
      target.focus();
      target.scrollIntoView({ block: "center" });
      return;
    }
  }
  const id = decodeURIComponent(window.location.hash.slice(1));
  if (!id.startsWith("id_")) return;
  const field = document.getElementById(id);
  if (field && field.matches("input, select, textarea")) {
    field.focus();
    field.scrollIntoView({ block: "center" });
  }
}

if (document.readyState === "loading") {
  document.addEventListener("DOMContentLoaded", focusOnArrival);
} else {
  focusOnArrival();
}
