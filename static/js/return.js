// wechat-checkout: the paid page sends the shopper back to the merchant after a short, visible
// countdown, which the shopper may stop. Coming back to this page (the Back button) does not send
// them away again. Arriving at the merchant's page proves nothing about payment: the merchant
// confirms it through the API or a webhook.
(function () {
  'use strict';
  var link = document.getElementById('back');
  var box = document.getElementById('countdown');
  var shown = document.getElementById('countdown-seconds');
  var stay = document.getElementById('stay');
  if (!link || !box || !shown) { return; }
  var left = parseInt(link.getAttribute('data-auto-return'), 10);
  if (!(left > 0)) { return; }
  var key = 'wechat-checkout:returned:' + window.location.pathname;
  var timer = null;

  function remember() {
    try { window.sessionStorage.setItem(key, '1'); } catch (e) { /* storage off: no memory */ }
  }

  try {
    if (window.sessionStorage.getItem(key)) { return; }
  } catch (e) { /* storage off: count down as usual */ }

  link.addEventListener('click', remember);
  box.hidden = false;
  shown.textContent = String(left);
  timer = window.setInterval(function () {
    left -= 1;
    shown.textContent = String(Math.max(left, 0));
    if (left <= 0) {
      window.clearInterval(timer);
      remember();
      window.location.replace(link.href);
    }
  }, 1000);
  if (stay) {
    stay.addEventListener('click', function () {
      window.clearInterval(timer);
      box.hidden = true;
      remember();
    });
  }
}());
