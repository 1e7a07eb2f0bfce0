// wechat-checkout: the WeixinJSBridge glue of the checkout page.
// The bridge's "ok" only means the shopper finished in WeChat; the page shows "paid" only after
// the server confirms it (from WeChat's notify or an orderquery), by reloading into the final page.
(function () {
  'use strict';
  var root = document.getElementById('checkout');
  if (!root) { return; }
  var orderNo = root.getAttribute('data-order');
  var payButton = document.getElementById('pay');
  var retryButton = document.getElementById('retry');
  var message = document.getElementById('message');
  var busy = false;

  function say(text, kind) {
    message.textContent = text;
    message.className = 'message' + (kind ? ' ' + kind : '');
  }

  // WeixinJSBridge appears asynchronously; invoking it before WeixinJSBridgeReady fails.
  function whenBridgeReady(fn) {
    if (typeof window.WeixinJSBridge !== 'undefined' && window.WeixinJSBridge.invoke) {
      fn();
      return;
    }
    if (document.addEventListener) {
      document.addEventListener('WeixinJSBridgeReady', fn, false);
    } else if (document.attachEvent) {
      document.attachEvent('WeixinJSBridgeReady', fn);
      document.attachEvent('onWeixinJSBridgeReady', fn);
    }
  }

  function request(method, url) {
    return fetch(url, { method: method, headers: { 'Accept': 'application/json' }, credentials: 'same-origin' })
      .then(function (r) {
        return r.json().then(function (body) { return { ok: r.ok, status: r.status, body: body }; });
      });
  }

  function failed(text) {
    say(text, 'error');
    busy = false;
    payButton.hidden = true;
    retryButton.hidden = false;
    retryButton.disabled = false;
    // The way back to the merchant (when the order names one), never taken by itself here.
    var back = document.getElementById('back');
    if (back) { back.hidden = false; }
  }

  function settle() {
    window.location.reload();
  }

  function poll(attempt) {
    request('GET', '/pay/' + encodeURIComponent(orderNo) + '/status').then(function (res) {
      var state = res.body && res.body.state;
      if (state === 'PAID' || state === 'CLOSED') { settle(); return; }
      if (attempt >= 40) {
        say('正在确认支付结果，请稍后刷新本页查看。', 'warn');
        busy = false;
        return;
      }
      window.setTimeout(function () { poll(attempt + 1); }, attempt < 10 ? 1000 : 3000);
    }).catch(function () {
      window.setTimeout(function () { poll(attempt + 1); }, 3000);
    });
  }

  function invoke(params) {
    say('请在微信支付窗口中完成付款');
    window.WeixinJSBridge.invoke('getBrandWCPayRequest', params, function (res) {
      var result = res && res.err_msg;
      if (result === 'get_brand_wcpay_request:ok') {
        say('正在确认支付结果…');
        poll(0);
      } else if (result === 'get_brand_wcpay_request:cancel') {
        failed('已取消支付，可重新支付。');
      } else {
        failed('支付未完成' + (res && res.err_desc ? '：' + res.err_desc : '') + '，可重新支付。');
      }
    });
  }

  function pay() {
    if (busy) { return; }
    busy = true;
    payButton.disabled = true;
    retryButton.disabled = true;
    say('正在发起支付…');
    request('POST', '/pay/' + encodeURIComponent(orderNo) + '/jsapi').then(function (res) {
      if (res.body && res.body.state === 'TAKEN') { settle(); return; }
      if (!res.ok) {
        failed((res.body && res.body.error) || '暂时无法发起支付，请稍后重试。');
        return;
      }
      if (res.body.state !== 'PAYING') { settle(); return; }
      whenBridgeReady(function () { invoke(res.body.params); });
    }).catch(function () {
      failed('网络异常，请重试。');
    });
  }

  payButton.addEventListener('click', pay);
  retryButton.addEventListener('click', pay);
}());
