DROP TABLE platform_certificates;
