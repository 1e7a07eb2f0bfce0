/*
 * WeixinJSBridge, as the wechat-checkout simulator plays the WeChat client.
 *
 * Load it with <script src="{simulator}/bridge.js"></script>. Like the real client, it defines
 * window.WeixinJSBridge only when it is ready, and then fires "WeixinJSBridgeReady" on document
 * (asynchronously, after DOMContentLoaded), so pages must wait for that event.
 *
 * invoke('getBrandWCPayRequest', params, cb) checks the six parameters with the simulator
 * (bridge/verify), shows a pay sheet, reports the shopper's choice to the simulator
 * (shopper/pay) and calls cb({err_msg: 'get_brand_wcpay_request:ok' | ':cancel' | ':fail'}).
 */
(function () {
  'use strict';
  if (window.WeixinJSBridge && window.WeixinJSBridge.__wxsim) {
    return;
  }
  var script = document.currentScript;
  var src = script && script.src ? script.src : '';
  // The simulator's own base URL: where this script was served from.
  var base = src.replace(/\/bridge\.js(\?.*)?(#.*)?$/, '');
  var PREFIX = 'get_brand_wcpay_request:';

  function post(path, body) {
    return fetch(base + path, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify(body)
    }).then(function (r) {
      return r.json().then(
        function (j) { return { status: r.status, body: j || {} }; },
        function () { return { status: r.status, body: {} }; }
      );
    });
  }

  function yuan(fen) {
    var n = Math.round(Number(fen) || 0);
    var abs = Math.abs(n);
    var cents = abs % 100;
    return (n < 0 ? '-' : '') + Math.floor(abs / 100) + '.' + (cents < 10 ? '0' : '') + cents;
  }

  function answer(cb, res) {
    if (typeof cb !== 'function') {
      return;
    }
    try {
      cb(res);
    } catch (e) {
      setTimeout(function () { throw e; }, 0);
    }
  }

  function el(tag, css, text) {
    var node = document.createElement(tag);
    if (css) {
      node.style.cssText = css;
    }
    if (text !== undefined) {
      node.textContent = text;
    }
    return node;
  }

  var BUTTON = 'display:block;width:100%;box-sizing:border-box;margin:10px 0 0;padding:12px;border:0;' +
    'border-radius:6px;font-size:17px;cursor:pointer;';

  // The pay sheet: an overlay at the bottom of the screen, like the client's.
  function sheet(info, done) {
    var overlay = el('div', 'position:fixed;left:0;top:0;right:0;bottom:0;z-index:2147483647;' +
      'background:rgba(0,0,0,.6);display:flex;align-items:flex-end;justify-content:center;' +
      'font-family:-apple-system,BlinkMacSystemFont,"PingFang SC","Microsoft YaHei",sans-serif;');
    overlay.id = 'wxsim-sheet';
    overlay.setAttribute('role', 'dialog');
    overlay.setAttribute('aria-label', '微信支付');
    var panel = el('div', 'background:#fff;width:100%;max-width:480px;border-radius:12px 12px 0 0;' +
      'padding:20px 20px calc(20px + env(safe-area-inset-bottom));box-sizing:border-box;text-align:center;color:#111;');
    panel.appendChild(el('div', 'font-size:15px;color:#888;', '微信支付（模拟）'));
    panel.appendChild(el('div', 'font-size:16px;margin-top:14px;word-break:break-all;', info.body || ''));
    var amount = el('div', 'font-size:36px;font-weight:600;margin:10px 0 4px;', '¥' + yuan(info.total_fee));
    amount.id = 'wxsim-amount';
    panel.appendChild(amount);
    panel.appendChild(el('div', 'font-size:13px;color:#888;margin-bottom:8px;',
      '商户号 ' + (info.mch_id || '') + ' · 订单 ' + (info.out_trade_no || '')));

    function button(id, label, css, outcome) {
      var b = el('button', BUTTON + css, label);
      b.id = id;
      b.type = 'button';
      b.addEventListener('click', function () {
        if (overlay.parentNode) {
          overlay.parentNode.removeChild(overlay);
        }
        done(outcome);
      });
      panel.appendChild(b);
    }
    button('wxsim-pay', '立即支付', 'background:#07c160;color:#fff;', 'ok');
    button('wxsim-cancel', '取消', 'background:#f2f2f2;color:#111;', 'cancel');
    button('wxsim-fail', '模拟支付失败', 'background:#fff;color:#fa5151;border:1px solid #fa5151;', 'fail');
    overlay.appendChild(panel);
    document.body.appendChild(overlay);
  }

  function networkError(cb) {
    return function () {
      answer(cb, { err_msg: PREFIX + 'fail', err_desc: '网络错误，请稍后再试' });
    };
  }

  function pay(params, cb) {
    post('/bridge/verify', params || {}).then(function (r) {
      var v = r.body;
      if (!v.ok) {
        if (v.hint && window.console) {
          window.console.warn('[WeixinJSBridge simulator] ' + v.hint);
        }
        answer(cb, { err_msg: v.err_msg || PREFIX + 'fail', err_desc: v.err_desc || v.error || '' });
        return;
      }
      sheet(v, function (outcome) {
        post('/shopper/pay', { prepay_id: v.prepay_id, outcome: outcome }).then(function (p) {
          if (outcome === 'cancel') {
            answer(cb, { err_msg: PREFIX + 'cancel' });
          } else if (outcome === 'ok' && p.status === 200) {
            answer(cb, { err_msg: PREFIX + 'ok' });
          } else {
            answer(cb, { err_msg: PREFIX + 'fail', err_desc: p.body.error || '支付失败' });
          }
        }, networkError(cb));
      });
    }, networkError(cb));
  }

  var bridge = {
    __wxsim: true,
    invoke: function (name, params, cb) {
      if (name === 'getBrandWCPayRequest') {
        pay(params, cb);
        return;
      }
      setTimeout(function () { answer(cb, { err_msg: name + ':fail' }); }, 0);
    },
    call: function () {},
    on: function () {}
  };

  function ready() {
    setTimeout(function () {
      window.WeixinJSBridge = bridge;
      var ev;
      try {
        ev = new Event('WeixinJSBridgeReady', { bubbles: true });
      } catch (e) {
        ev = document.createEvent('Event');
        ev.initEvent('WeixinJSBridgeReady', true, true);
      }
      document.dispatchEvent(ev);
    }, 0);
  }

  if (document.readyState === 'loading') {
    document.addEventListener('DOMContentLoaded', ready);
  } else {
    ready();
  }
})();
