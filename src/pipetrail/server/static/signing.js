// Votes signed in this browser: the approver's Ed25519 private key is read from a file
// into WebCrypto (not extractable once loaded) and never leaves the page. For a vote, the
// page asks the server for the bytes the vote appends (POST /api/v1/requests/ID/to-sign),
// signs each, and sends the signatures (POST /api/v1/requests/ID/signed); the server checks
// them against the key the ledger records for the user. Loaded from the server (the CSP
// forbids inline script); no library.
(function () {
  "use strict";

  var section = document.getElementById("browser-signing");
  if (!section) {
    return;
  }
  var status = document.getElementById("signing-status");
  var input = document.getElementById("signing-key");
  var csrf = section.getAttribute("data-csrf") || "";
  var loaded = null; // {key: CryptoKey, publicKey: "ed25519:BASE64"}

  function say(text, isError) {
    status.textContent = text;
    status.className = isError ? "error" : "";
    status.setAttribute("role", isError ? "alert" : "status");
  }

  function bytesOfBase64(text) {
    var binary = atob(text);
    var out = new Uint8Array(binary.length);
    for (var i = 0; i < binary.length; i++) {
      out[i] = binary.charCodeAt(i);
    }
    return out;
  }

  function base64OfBytes(bytes) {
    var binary = "";
    var view = new Uint8Array(bytes);
    for (var i = 0; i < view.length; i++) {
      binary += String.fromCharCode(view[i]);
    }
    return btoa(binary);
  }

  function derOfPem(text) {
    if (text.indexOf("ENCRYPTED PRIVATE KEY") >= 0) {
      throw new Error(
        "this key file is encrypted with a passphrase, which the browser cannot open; " +
          "vote from the command line (pipetrail approve) instead"
      );
    }
    var match = /-----BEGIN PRIVATE KEY-----([\s\S]*?)-----END PRIVATE KEY-----/.exec(text);
    if (!match) {
      throw new Error(
        "this file is not a private key in PKCS #8 PEM form, as `pipetrail user key create` writes it"
      );
    }
    return bytesOfBase64(match[1].replace(/\s+/g, ""));
  }

  async function loadKey(file) {
    var der = derOfPem(await file.text());
    var algorithm = { name: "Ed25519" };
    // Import once extractable to read the public half, then keep a non-extractable copy.
    var probe = await crypto.subtle.importKey("pkcs8", der, algorithm, true, ["sign"]);
    var jwk = await crypto.subtle.exportKey("jwk", probe);
    var raw = bytesOfBase64(jwk.x.replace(/-/g, "+").replace(/_/g, "/") + "=");
    var key = await crypto.subtle.importKey("pkcs8", der, algorithm, false, ["sign"]);
    return { key: key, publicKey: "ed25519:" + base64OfBytes(raw) };
  }

  async function post(url, body) {
    var answer = await fetch(url, {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf },
      body: JSON.stringify(body),
    });
    var data = await answer.json();
    if (!answer.ok) {
      throw new Error(data.detail || data.title || "the server refused (" + answer.status + ")");
    }
    return data;
  }

  async function vote(button) {
    var request = button.getAttribute("data-request");
    var decision = button.getAttribute("data-decision");
    var field = document.getElementById(button.getAttribute("data-comment-field"));
    var comment = field ? field.value : "";
    var base = "/api/v1/requests/" + encodeURIComponent(request);
    var draft = await post(base + "/to-sign", { decision: decision, comment: comment });
    if (draft.public_key !== loaded.publicKey) {
      throw new Error(
        "the key loaded is not the one the ledger records for " + draft.user + " (" +
          draft.key_id + "); load that key's file"
      );
    }
    var vote = draft.events.length ? draft.events[0].payload : null;
    if (!vote || vote.request_id !== request || vote.comment !== comment || vote.by !== draft.user) {
      throw new Error("the server proposed to sign something other than this vote; nothing was signed");
    }
    var signatures = [];
    for (var i = 0; i < draft.events.length; i++) {
      var message = bytesOfBase64(draft.events[i].message);
      var signature = await crypto.subtle.sign({ name: "Ed25519" }, loaded.key, message);
      signatures.push(base64OfBytes(signature));
    }
    var done = await post(base + "/signed", {
      decision: decision,
      comment: comment,
      signatures: signatures,
    });
    say(request + ": " + decision + " recorded, signed in this browser (" + done.status + ")", false);
    window.location.assign("/models");
  }

  var buttons = document.querySelectorAll("button.sign-vote");

  input.addEventListener("change", function () {
    var file = input.files && input.files[0];
    if (!file) {
      return;
    }
    loadKey(file).then(
      function (found) {
        loaded = found;
        buttons.forEach(function (b) {
          b.disabled = false;
        });
        say("Key loaded (" + found.publicKey.slice(0, 20) + "...); it stays in this page.", false);
      },
      function (error) {
        loaded = null;
        buttons.forEach(function (b) {
          b.disabled = true;
        });
        say("Cannot use this key: " + error.message, true);
      }
    );
  });

  buttons.forEach(function (button) {
    button.addEventListener("click", function () {
      if (!loaded) {
        say("Load your signing key first.", true);
        return;
      }
      button.disabled = true;
      vote(button).catch(function (error) {
        button.disabled = false;
        say("Not recorded: " + error.message, true);
      });
    });
  });
})();
