// Progressive enhancement for the agent console. Everything works without this file.
(function () {
  "use strict";

  // "Show older" on the customer timeline: fetch the older page and prepend its entries in
  // place, keeping the reader's scroll position. Falls back to the plain link on any error.
  function enhanceOlderLink(link) {
    link.addEventListener("click", function (event) {
      if (event.metaKey || event.ctrlKey || event.shiftKey || event.button !== 0) return;
      event.preventDefault();
      link.setAttribute("aria-busy", "true");
      fetch(link.href, { credentials: "same-origin", headers: { "Accept": "text/html" } })
        .then(function (response) {
          if (!response.ok) throw new Error(String(response.status));
          return response.text();
        })
        .then(function (html) {
          var doc = new DOMParser().parseFromString(html, "text/html");
          var incoming = doc.getElementById("timeline-entries");
          var list = document.getElementById("timeline-entries");
          if (!incoming || !list) throw new Error("no timeline");
          var before = document.documentElement.scrollHeight;
          var fragment = document.createDocumentFragment();
          Array.prototype.forEach.call(incoming.children, function (child) {
            fragment.appendChild(document.importNode(child, true));
          });
          list.insertBefore(fragment, list.firstChild);
          window.scrollBy(0, document.documentElement.scrollHeight - before);
          var nextLink = doc.querySelector("a[data-older]");
          if (nextLink) {
            link.href = nextLink.getAttribute("href");
            link.removeAttribute("aria-busy");
          } else {
            link.parentNode.remove();
          }
        })
        .catch(function () {
          window.location.href = link.href;
        });
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("a[data-older]").forEach(enhanceOlderLink);
  });
})();
