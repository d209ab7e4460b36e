/**
 * Script of the status page, served as `/status.js`. It polls `/api/status` and renders
 * the report with DOM methods and text nodes only, never with innerHTML, so values from
 * the report cannot inject markup. The charts are SVG elements built the same way.
 *
 * The admin token stays in the password field and in memory. The script sends it only
 * as the Authorization header of the redeliver request to this origin.
 *
 * NOTE: this is browser JavaScript in a string, so the TypeScript compiler does not
 * check it. The unit tests parse it, and the Chromium test runs it.
 */
export const STATUS_PAGE_SCRIPT = String.raw`'use strict';
(function () {
  var POLL_INTERVAL_MS = 5000;
  var SVG_NS = 'http://www.w3.org/2000/svg';
  var adminEnabled = false;
  var pendingRedeliveries = {};
  var refreshTimer = null;

  function byId(id) {
    return document.getElementById(id);
  }

  function appendChildren(node, children) {
    (children || []).forEach(function (child) {
      if (child === null || child === undefined) return;
      if (typeof child === 'string' || typeof child === 'number') {
        node.appendChild(document.createTextNode(String(child)));
      } else {
        node.appendChild(child);
      }
    });
    return node;
  }

  function element(tag, attributes, children) {
    var node = document.createElement(tag);
    setAttributes(node, attributes);
    return appendChildren(node, children);
  }

  function svgElement(tag, attributes, children) {
    var node = document.createElementNS(SVG_NS, tag);
    setAttributes(node, attributes);
    return appendChildren(node, children);
  }

  function setAttributes(node, attributes) {
    Object.keys(attributes || {}).forEach(function (name) {
      var value = attributes[name];
      if (value !== null && value !== undefined) node.setAttribute(name, String(value));
    });
  }

  function replaceContent(node, children) {
    while (node.firstChild) node.removeChild(node.firstChild);
    appendChildren(node, children);
  }

  function formatBytes(value) {
    if (value === null || value === undefined) return '-';
    var bytes = Number(value);
    var units = ['bytes', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];
    var unit = 0;
    while (Math.abs(bytes) >= 1024 && unit < units.length - 1) {
      bytes /= 1024;
      unit += 1;
    }
    var text = unit === 0 ? String(bytes) : bytes.toFixed(bytes >= 100 ? 0 : 1);
    return text + ' ' + units[unit];
  }

  function formatRate(value) {
    if (value === 0) return '0';
    return value < 10 ? value.toFixed(1) : String(Math.round(value));
  }

  function formatTime(value) {
    return new Date(value).toISOString().slice(11, 19) + ' UTC';
  }

  function formatDateTime(value) {
    return new Date(value).toISOString().slice(0, 19).replace('T', ' ') + ' UTC';
  }

  function yesNo(value) {
    if (value === null || value === undefined) return 'unknown';
    return value ? 'yes' : 'no';
  }

  function renderRole(report) {
    var readiness = report.readiness;
    var badge = byId('role');
    badge.className = 'role role-' + readiness.role + (readiness.ready ? '' : ' not-ready');
    badge.setAttribute('data-role', readiness.role);
    badge.setAttribute('data-status', readiness.status);
    var label = readiness.role === 'none' ? 'no role' : readiness.role;
    badge.textContent = label + ' (' + readiness.status.replace(/_/g, ' ') + ')';
    byId('role-message').textContent = readiness.message;
  }

  function conditionClass(condition) {
    if (condition === 'ok') return 'condition-ok';
    if (condition === 'over_limit' || condition === 'unreserved' || condition === 'unknown') return 'condition-warn';
    return 'condition-bad';
  }

  function renderSlot(slot) {
    var facts = [
      ['name', slot.name],
      ['condition', element('span', { class: conditionClass(slot.condition) }, [slot.condition.replace(/_/g, ' ')])],
      ['exists', yesNo(slot.exists)],
      ['active', yesNo(slot.active)],
      ['plugin', slot.plugin],
      ['publication', slot.publication],
      ['wal_status', slot.walStatus === null ? '-' : slot.walStatus],
      ['confirmed_flush_lsn', slot.confirmedFlushLsn === null ? '-' : slot.confirmedFlushLsn],
      ['lag', formatBytes(slot.lagBytes) + (slot.lagSeconds === null ? '' : ', ' + slot.lagSeconds.toFixed(1) + ' s')],
      ['retained WAL', formatBytes(slot.retainedBytes) + ' of ' + formatBytes(slot.maxRetainedBytes) + ' allowed'],
    ];
    var children = [];
    facts.forEach(function (fact) {
      children.push(element('dt', null, [fact[0]]));
      children.push(element('dd', null, [fact[1]]));
    });
    replaceContent(byId('slot'), children);
  }

  /**
   * Draws a line chart. series: [{ name, className, values }], where values has one
   * number or null per time in times. The y axis reaches at least minimumMax.
   */
  function renderChart(container, label, times, series, formatValue, minimumMax) {
    var width = 520;
    var height = 160;
    var left = 64;
    var right = 12;
    var top = 10;
    var bottom = 24;
    var plotWidth = width - left - right;
    var plotHeight = height - top - bottom;
    var max = 0;
    series.forEach(function (line) {
      line.values.forEach(function (value) {
        if (value !== null && value > max) max = value;
      });
    });
    if (max < minimumMax) max = minimumMax;
    var count = times.length;
    function x(index) {
      return left + (count <= 1 ? plotWidth : (index * plotWidth) / (count - 1));
    }
    function y(value) {
      return top + plotHeight - (value / max) * plotHeight;
    }

    var chart = svgElement('svg', {
      viewBox: '0 0 ' + width + ' ' + height,
      role: 'img',
      'aria-label': label,
      'data-points': count,
    });
    chart.appendChild(svgElement('line', { class: 'axis', x1: left, y1: top, x2: left, y2: top + plotHeight }));
    chart.appendChild(
      svgElement('line', { class: 'axis', x1: left, y1: top + plotHeight, x2: left + plotWidth, y2: top + plotHeight }),
    );
    chart.appendChild(svgElement('text', { class: 'label', x: left - 6, y: top + 10, 'text-anchor': 'end' }, [formatValue(max)]));
    chart.appendChild(svgElement('text', { class: 'label', x: left - 6, y: top + plotHeight, 'text-anchor': 'end' }, ['0']));
    if (count > 0) {
      chart.appendChild(svgElement('text', { class: 'label', x: left, y: height - 6 }, [formatTime(times[0])]));
      chart.appendChild(
        svgElement('text', { class: 'label', x: left + plotWidth, y: height - 6, 'text-anchor': 'end' }, [
          formatTime(times[count - 1]),
        ]),
      );
    }
    series.forEach(function (line) {
      var points = [];
      var dots = [];
      line.values.forEach(function (value, index) {
        if (value === null) return;
        var px = x(index).toFixed(1);
        var py = y(value).toFixed(1);
        points.push(px + ',' + py);
        dots.push(
          svgElement('circle', { class: line.className, cx: px, cy: py, r: 2.5, 'data-value': value }, [
            svgElement('title', null, [line.name + ' ' + formatValue(value) + ' at ' + formatTime(times[index])]),
          ]),
        );
      });
      chart.appendChild(svgElement('polyline', { class: line.className, points: points.join(' ') }));
      dots.forEach(function (dot) {
        chart.appendChild(dot);
      });
    });

    var legend = element(
      'div',
      { class: 'legend' },
      series.map(function (line) {
        return element('span', null, [element('span', { class: 'swatch ' + line.className }), line.name]);
      }),
    );
    replaceContent(container, [chart, legend]);
  }

  function renderCharts(activity) {
    var samples = activity.samples;
    var times = samples.map(function (sample) {
      return sample.at;
    });
    function perSecond(count, sample) {
      return count / (Math.max(sample.intervalMs, 1000) / 1000);
    }
    renderChart(
      byId('throughput-chart'),
      'Events per second over the last ' + Math.round((samples.length * activity.sampleIntervalMs) / 60000) + ' minutes',
      times,
      [
        {
          name: 'delivered',
          className: 'series-delivered',
          values: samples.map(function (sample) {
            return perSecond(sample.delivered, sample);
          }),
        },
        {
          name: 'failed',
          className: 'series-failed',
          values: samples.map(function (sample) {
            return perSecond(sample.failed, sample);
          }),
        },
      ],
      formatRate,
      1,
    );
    renderChart(
      byId('lag-chart'),
      'Replication lag in bytes',
      times,
      [
        {
          name: 'lag',
          className: 'series-lag',
          values: samples.map(function (sample) {
            return sample.lagBytes;
          }),
        },
      ],
      formatBytes,
      1024,
    );
  }

  function table(headers, rows) {
    return element('table', null, [
      element('thead', null, [
        element(
          'tr',
          null,
          headers.map(function (header) {
            return element('th', null, [header]);
          }),
        ),
      ]),
      element('tbody', null, rows),
    ]);
  }

  function renderFailures(failures) {
    if (failures.length === 0) {
      replaceContent(byId('failures'), [element('p', { class: 'muted' }, ['No failed deliveries since this process started.'])]);
      return;
    }
    var rows = failures.map(function (failure) {
      var eventId = failure.eventId + (failure.events > 1 ? ' (+' + (failure.events - 1) + ' in the batch)' : '');
      return element('tr', { class: 'failure' }, [
        element('td', null, [formatTime(failure.at)]),
        element('td', null, [failure.webhook]),
        element('td', null, [failure.trigger]),
        element('td', { class: 'event-id' }, [eventId]),
        element('td', { class: 'number' }, [failure.attempt === 0 ? '-' : failure.attempt]),
        element('td', { class: 'number status' }, [failure.status === null ? 'no response' : failure.status]),
        element('td', { class: 'error' }, [failure.error === null ? '' : failure.error]),
      ]);
    });
    replaceContent(byId('failures'), [
      table(['time', 'webhook', 'trigger', 'event id', 'attempt', 'status', 'error'], rows),
    ]);
  }

  function redeliverButton(deadLetter) {
    var button = element('button', { type: 'button', class: 'redeliver', 'data-id': deadLetter.id }, ['Redeliver']);
    button.addEventListener('click', function () {
      redeliver(deadLetter.id);
    });
    return button;
  }

  function renderDeadLetters(deadLetters) {
    var counts = [];
    if (deadLetters.message !== null) counts.push(element('p', { class: 'muted' }, [deadLetters.message]));
    if (deadLetters.byTrigger.length > 0) {
      counts.push(
        table(
          ['trigger', 'pending', 'total', 'newest'],
          deadLetters.byTrigger.map(function (entry) {
            return element('tr', null, [
              element('td', null, [entry.trigger]),
              element('td', { class: 'number' }, [entry.pending]),
              element('td', { class: 'number' }, [entry.total]),
              element('td', null, [formatDateTime(entry.newestAt)]),
            ]);
          }),
        ),
      );
    }
    replaceContent(byId('dead-letter-counts'), counts);

    if (deadLetters.latest.length === 0) {
      replaceContent(byId('dead-letters'), deadLetters.available ? [element('p', { class: 'muted' }, ['No dead letters.'])] : []);
      return;
    }
    var rows = deadLetters.latest.map(function (deadLetter) {
      var state =
        deadLetter.redeliveredAt === null
          ? element('span', null, ['pending'])
          : element('span', { class: 'redelivered' }, ['redelivered ' + formatDateTime(deadLetter.redeliveredAt)]);
      var detail = deadLetter.reason + (deadLetter.lastError === null ? '' : ': ' + deadLetter.lastError);
      return element('tr', { class: 'dead-letter', 'data-id': deadLetter.id }, [
        element('td', { class: 'number' }, [deadLetter.id]),
        element('td', null, [formatDateTime(deadLetter.createdAt)]),
        element('td', null, [deadLetter.trigger]),
        element('td', null, [deadLetter.webhook]),
        element('td', null, [deadLetter.op]),
        element('td', null, [deadLetter.table === null ? '-' : deadLetter.table]),
        element('td', { class: 'number' }, [deadLetter.attempts + deadLetter.redeliveryAttempts]),
        element('td', { class: 'number' }, [deadLetter.lastStatus === null ? '-' : deadLetter.lastStatus]),
        element('td', { class: 'error' }, [detail]),
        element('td', { class: 'state' }, [state]),
        element('td', null, [redeliverButton(deadLetter)]),
      ]);
    });
    replaceContent(byId('dead-letters'), [
      table(['id', 'created', 'trigger', 'webhook', 'op', 'table', 'attempts', 'status', 'reason', 'state', ''], rows),
    ]);
    updateButtons();
  }

  function tokenValue() {
    return byId('admin-token').value.trim();
  }

  function updateButtons() {
    var canSend = adminEnabled && tokenValue() !== '';
    Array.prototype.forEach.call(document.querySelectorAll('button.redeliver'), function (button) {
      button.disabled = !canSend || pendingRedeliveries[button.getAttribute('data-id')] === true;
      button.title = adminEnabled ? (canSend ? 'POST this dead letter to its webhook again' : 'paste the admin token first') : 'server.admin_token is not set';
    });
  }

  function renderAdmin(admin) {
    adminEnabled = admin.enabled;
    var input = byId('admin-token');
    input.disabled = !adminEnabled;
    byId('admin-note').textContent = adminEnabled
      ? 'The token stays in this page and is sent only with a redeliver request.'
      : 'Redelivery is disabled because server.admin_token is not set.';
    updateButtons();
  }

  function redeliver(id) {
    var token = tokenValue();
    if (!adminEnabled || token === '') return;
    pendingRedeliveries[id] = true;
    updateButtons();
    var result = byId('action-result');
    result.textContent = 'Redelivering dead letter ' + id + '...';
    fetch('/api/dead-letters/' + encodeURIComponent(id) + '/redeliver', {
      method: 'POST',
      headers: { authorization: 'Bearer ' + token },
      cache: 'no-store',
    })
      .then(function (response) {
        return response.json().then(function (body) {
          return { status: response.status, body: body };
        });
      })
      .then(function (answer) {
        var body = answer.body;
        if (body.outcome === 'delivered') {
          result.textContent = 'Dead letter ' + id + ' delivered to webhook ' + body.webhook + ', status ' + body.status + '.';
        } else if (body.outcome === 'failed') {
          var failure = body.status === null ? body.error : 'status ' + body.status;
          result.textContent = 'Dead letter ' + id + ' failed again: ' + failure + '.';
        } else {
          result.textContent = 'Dead letter ' + id + ' was not redelivered: ' + (body.error || 'HTTP ' + answer.status) + '.';
        }
        result.setAttribute('data-outcome', body.outcome || 'error');
      })
      .catch(function (error) {
        result.textContent = 'Redeliver request failed: ' + error.message;
        result.setAttribute('data-outcome', 'error');
      })
      .then(function () {
        delete pendingRedeliveries[id];
        refresh();
      });
  }

  function render(report) {
    renderRole(report);
    renderSlot(report.slot);
    renderCharts(report.activity);
    renderFailures(report.activity.failures);
    renderAdmin(report.admin);
    renderDeadLetters(report.deadLetters);
    byId('updated').textContent = formatDateTime(report.generatedAt);
    var instance = report.instance;
    byId('instance').textContent =
      'Instance ' + instance.hostname + ', process ' + instance.pid +
      (instance.lockSessionPid === null ? '' : ', lock session pid ' + instance.lockSessionPid) + '.';
    document.body.setAttribute('data-loaded', 'true');
  }

  function refresh() {
    clearTimeout(refreshTimer);
    fetch('/api/status', { cache: 'no-store' })
      .then(function (response) {
        if (!response.ok) throw new Error('HTTP ' + response.status);
        return response.json();
      })
      .then(render)
      .catch(function (error) {
        byId('role-message').textContent = 'Reading /api/status failed: ' + error.message + '. Retrying.';
      })
      .then(function () {
        refreshTimer = setTimeout(refresh, POLL_INTERVAL_MS);
      });
  }

  document.addEventListener('DOMContentLoaded', function () {
    byId('admin-token').addEventListener('input', updateButtons);
    refresh();
  });
})();
`;
